-- samples_wide: one flat row per impression, with the user's weighted history.
-- samples does not copy the history into every impression (a common line is shared by
-- dozens of impressions and carries hundreds of features); this view joins it back.
CREATE OR REPLACE VIEW ${database}.samples_wide AS
SELECT s.*,
       u.user_categories,
       u.user_shops,
       u.user_brands,
       u.user_intentions
FROM ${database}.samples AS s
LEFT JOIN ${database}.user_contexts AS u
  ON s.split = u.split AND s.common_feature_index = u.common_feature_index;
