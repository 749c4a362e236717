-- Side features, step 4: the positives of both splits, label = 1.
/*
  Reads   kept_samples, kept_items, feature_vocab (step 3), ${database}.samples, ${database}.user_contexts.
  Defines positives        the kept train rows whose label is 1, and every test row whose label is 1
                           (the test split is not filtered: it is mapped with the train vocabularies)
          featured_rows    the rows that need side features: the positives, and each kept item's
                           first train impression (which gives item_vocab its features)
          item_lists_top, item_lists, history_top, user_histories, featured_single, featured (below)
  Params  label (click or conversion), history_length (L), item_intention_length.

  Every side-feature id becomes its feature_vocab index, 0 where the field is missing or the
  id is not in the vocabulary. A multi-valued field keeps its known ids with the largest
  weights (ties by the smaller id), at most L of them, padded with index 0 and weight 0.0
  to exactly L, so every row has the same shape (Petastorm's TensorFlow reader batches
  fixed shapes). The weights are the ln-count VALUEs of the raw files (1.0 for item intentions).
  The feature lists (side_single_stack, side_single_pivot, side_single_indices, user_multi_stack,
  user_multi_pivot, item_multi_stack, item_multi_pivot, item_multi_arrays) are filled in from the
  field registry, lakerec/schema/fields.py; lakerec/sqlfiles.py documents each one.
*/
CREATE OR REPLACE TEMPORARY VIEW positives AS
SELECT * FROM kept_samples WHERE ${label} = 1
UNION ALL
SELECT * FROM ${database}.samples WHERE split = 'test' AND ${label} = 1;

-- Rows that need side features: the positives and each kept item's first impression
CREATE OR REPLACE TEMPORARY VIEW featured_rows AS
SELECT s.*
FROM ${database}.samples AS s
LEFT SEMI JOIN (SELECT split, sample_id FROM positives
                UNION
                SELECT 'train' AS split, first_sample_id AS sample_id FROM kept_items) AS k
  ON k.split = s.split AND k.sample_id = s.sample_id;

-- Item lists (item intentions) of each featured row: per field, the known ids, largest weight first, padded to item_intention_length
CREATE OR REPLACE TEMPORARY VIEW item_lists_top AS
SELECT split, sample_id, feature,
       concat(transform(top, t -> t.idx),
              array_repeat(0, ${item_intention_length} - size(top))) AS ids,
       concat(transform(top, t -> CAST(t.weight AS FLOAT)),
              array_repeat(CAST(0 AS FLOAT), ${item_intention_length} - size(top))) AS weights
FROM (
  SELECT e.split, e.sample_id, e.feature,
         slice(sort_array(collect_list(
                 named_struct('neg_weight', -e.weight, 'raw_id', e.raw_id, 'idx', v.`index`, 'weight', e.weight))),
               1, ${item_intention_length}) AS top
  FROM (SELECT r.split, r.sample_id, f.feature, x.e.id AS raw_id, x.e.weight AS weight
        FROM featured_rows AS r
        LATERAL VIEW stack(${item_multi_stack}) f AS feature, entries
        LATERAL VIEW explode(f.entries) x AS e) AS e
  JOIN feature_vocab AS v ON v.feature = e.feature AND v.raw_id = e.raw_id
  GROUP BY e.split, e.sample_id, e.feature
);

-- One row per featured row with item lists, an ids and a weights column per field
CREATE OR REPLACE TEMPORARY VIEW item_lists AS
SELECT *
FROM item_lists_top
PIVOT (first(ids) AS ids, first(weights) AS weights
       FOR feature IN (${item_multi_pivot}));

-- History of each user context the positives use: per field, the known ids, largest weight first, padded to history_length
CREATE OR REPLACE TEMPORARY VIEW history_top AS
SELECT split, common_feature_index, feature,
       concat(transform(top, t -> t.idx),
              array_repeat(0, ${history_length} - size(top))) AS ids,
       concat(transform(top, t -> CAST(t.weight AS FLOAT)),
              array_repeat(CAST(0 AS FLOAT), ${history_length} - size(top))) AS weights
FROM (
  SELECT h.split, h.common_feature_index, h.feature,
         slice(sort_array(collect_list(
                 named_struct('neg_weight', -h.weight, 'raw_id', h.raw_id, 'idx', v.`index`, 'weight', h.weight))),
               1, ${history_length}) AS top
  FROM (SELECT u.split, u.common_feature_index, f.feature, x.e.id AS raw_id, x.e.weight AS weight
        FROM ${database}.user_contexts AS u
        LEFT SEMI JOIN positives AS p
          ON p.split = u.split AND p.common_feature_index = u.common_feature_index
        LATERAL VIEW stack(${user_multi_stack}) f AS feature, entries
        LATERAL VIEW explode(f.entries) x AS e) AS h
  JOIN feature_vocab AS v ON v.feature = h.feature AND v.raw_id = h.raw_id
  GROUP BY h.split, h.common_feature_index, h.feature
);

-- One row per user context, an ids and a weights column per history field
CREATE OR REPLACE TEMPORARY VIEW user_histories AS
SELECT *
FROM history_top
PIVOT (first(ids) AS ids, first(weights) AS weights
       FOR feature IN (${user_multi_pivot}));

-- Single-valued side features of each featured row, one (feature, index) pair per known id
CREATE OR REPLACE TEMPORARY VIEW featured_single AS
SELECT f.split, f.sample_id, f.feature, v.`index`
FROM (SELECT r.split, r.sample_id, s.feature, s.raw_id
      FROM featured_rows AS r
      LATERAL VIEW stack(${side_single_stack}) s AS feature, raw_id) AS f
JOIN feature_vocab AS v ON v.feature = f.feature AND v.raw_id = f.raw_id;

-- Each featured row's side features as indices (0 when missing or unknown), and its item lists padded to item_intention_length
CREATE OR REPLACE TEMPORARY VIEW featured AS
SELECT r.split, r.sample_id,
       ${side_single_indices},
       ${item_multi_arrays}
FROM (SELECT split, sample_id FROM featured_rows) AS r
LEFT JOIN (SELECT *
           FROM featured_single
           PIVOT (first(`index`) FOR feature IN (${side_single_pivot}))) AS i
  ON i.split = r.split AND i.sample_id = r.sample_id
LEFT JOIN item_lists AS t ON t.split = r.split AND t.sample_id = r.sample_id;
