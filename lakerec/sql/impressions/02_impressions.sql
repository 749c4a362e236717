-- Impressions, step 2: one row per impression of the split, shaped for the ranker.
/*
  Reads   featured_rows (step 1), featured, user_histories (lakerec/sql/map_features.sql),
          ${database}.user_vocab, ${database}.item_vocab.
  Defines impressions  the columns of train_impressions / test_impressions, in the registry's order
  Param   history_length (L).

  Every impression is kept: a user or item outside the train vocabulary gets index 0 and
  is_cold_user / is_cold_item = true, an unknown or missing field index 0; the user's history
  comes from its user context, top-L by weight as in the interactions tables. A single-valued
  cross field carries its VALUE as `<name>_weight` (0.0 when the field is absent, kept when its
  id is unknown: the ln-count says how often the user met the item's category, shop, brand).
  The column lists (user_single_columns, user_multi_arrays, item_side_columns, rank_columns)
  are filled in from the field registry, lakerec/schema/fields.py; lakerec/sqlfiles.py
  documents each one. featured and user_histories are the one source of each listed column
  but the cross weights, which only featured_rows (samples) holds.
*/
CREATE OR REPLACE TEMPORARY VIEW impressions AS
SELECT r.sample_id, r.user_id, r.item_id, r.click, r.conversion,
       coalesce(u.user_index, 0) AS user_index,
       coalesce(i.item_index, 0) AS item_index,
       u.user_index IS NULL AS is_cold_user,
       i.item_index IS NULL AS is_cold_item,
       ${user_single_columns},
       ${user_multi_arrays},
       ${item_side_columns},
       ${rank_columns}
FROM featured_rows AS r
JOIN featured AS f ON f.split = r.split AND f.sample_id = r.sample_id
LEFT JOIN (SELECT user_id, user_index FROM ${database}.user_vocab) AS u ON u.user_id = r.user_id
LEFT JOIN (SELECT item_id, item_index FROM ${database}.item_vocab) AS i ON i.item_id = r.item_id
LEFT JOIN user_histories AS h ON h.split = r.split AND h.common_feature_index = r.common_feature_index;
