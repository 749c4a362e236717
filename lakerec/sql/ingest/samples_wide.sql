-- samples_wide: one flat row per impression, with the user's weighted history.
-- samples does not copy the history into every impression (a common line is shared by
-- dozens of impressions and carries hundreds of features); this view joins it back.
-- user_multi_fields: the history columns of user_contexts, from the field registry
-- (lakerec/schema/fields.py, documented in lakerec/sqlfiles.py).
CREATE OR REPLACE VIEW ${database}.samples_wide AS
SELECT s.*,
       ${user_multi_fields}
FROM ${database}.samples AS s
LEFT JOIN ${database}.user_contexts AS u
  ON s.split = u.split AND s.common_feature_index = u.common_feature_index;
