-- Map the fields of a set of impressions through feature_vocab: indices, top-L histories, padded lists.
/*
  Shared by two stages, each of which first defines the rows to map and feature_vocab:
    filter       lakerec/sql/filter/04_features.sql (the positives and each kept item's first impression,
                 feature_vocab is step 3's view)
    impressions  lakerec/sql/impressions/01_rows.sql (every impression of one split; feature_vocab
                 is the filter's table)

  Reads   featured_rows (samples rows: split, sample_id, common_feature_index and the fields),
          feature_vocab, ${database}.user_contexts.
  Defines item_lists_top, item_lists, history_top, user_histories, featured_single, featured (below)
  Params  history_length (L), item_intention_length.

  Every id of a field feature_vocab serves becomes its index, 0 where the field is missing or
  the id is not in the vocabulary: the side features of both towers and the ranker's fields
  (position, the user-item cross fields). A multi-valued field keeps its known ids with the
  largest weights (ties by the smaller id), at most L of them, padded with index 0 and weight 0.0
  to exactly L, so every row has the same shape (Petastorm's TensorFlow reader batches
  fixed shapes). The weights are the ln-count VALUEs of the raw files (1.0 for item intentions).
  The impression's own lists (item intentions, user-item intentions) have item_intention_length.
  The feature lists (row_single_stack, row_single_pivot, row_single_indices, user_multi_stack,
  user_multi_pivot, row_multi_stack, row_multi_pivot, row_multi_arrays) are filled in from the
  field registry, lakerec/schema/fields.py; lakerec/sqlfiles.py documents each one.
*/
-- The impression's lists (item and user-item intentions) of each featured row: per field, the known ids, largest weight first, padded to item_intention_length
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
        LATERAL VIEW stack(${row_multi_stack}) f AS feature, entries
        LATERAL VIEW explode(f.entries) x AS e) AS e
  JOIN feature_vocab AS v ON v.feature = e.feature AND v.raw_id = e.raw_id
  GROUP BY e.split, e.sample_id, e.feature
);

-- One row per featured row with lists, an ids and a weights column per field
CREATE OR REPLACE TEMPORARY VIEW item_lists AS
SELECT *
FROM item_lists_top
PIVOT (first(ids) AS ids, first(weights) AS weights
       FOR feature IN (${row_multi_pivot}));

-- History of each user context the featured rows use: per field, the known ids, largest weight first, padded to history_length
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
        LEFT SEMI JOIN featured_rows AS p
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

-- Single-valued fields of each featured row, one (feature, index) pair per known id
CREATE OR REPLACE TEMPORARY VIEW featured_single AS
SELECT f.split, f.sample_id, f.feature, v.`index`
FROM (SELECT r.split, r.sample_id, s.feature, s.raw_id
      FROM featured_rows AS r
      LATERAL VIEW stack(${row_single_stack}) s AS feature, raw_id) AS f
JOIN feature_vocab AS v ON v.feature = f.feature AND v.raw_id = f.raw_id;

-- Each featured row's single-valued fields as indices (0 when missing or unknown), and its lists padded to item_intention_length
CREATE OR REPLACE TEMPORARY VIEW featured AS
SELECT r.split, r.sample_id,
       ${row_single_indices},
       ${row_multi_arrays}
FROM (SELECT split, sample_id FROM featured_rows) AS r
LEFT JOIN (SELECT *
           FROM featured_single
           PIVOT (first(`index`) FOR feature IN (${row_single_pivot}))) AS i
  ON i.split = r.split AND i.sample_id = r.sample_id
LEFT JOIN item_lists AS t ON t.split = r.split AND t.sample_id = r.sample_id;
