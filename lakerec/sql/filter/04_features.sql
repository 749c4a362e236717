-- Side features, step 4: the positives of both splits, label = 1.
/*
  Reads   kept_samples, kept_items, feature_vocab (step 3), ${database}.samples, ${database}.user_contexts.
  Defines positives        the kept train rows whose label is 1, and every test row whose label is 1
                           (the test split is not filtered: it is mapped with the train vocabularies)
          featured_rows    the rows that need side features: the positives, and each kept item's
                           first train impression (which gives item_vocab its features)
          item_intention_top, history_top, user_histories, featured_single, featured (below)
  Params  label (click or conversion), history_length (L), item_intention_length.

  Every side-feature id becomes its feature_vocab index, 0 where the field is missing or the
  id is not in the vocabulary. A multi-valued field keeps its known ids with the largest
  weights (ties by the smaller id), at most L of them, padded with index 0 and weight 0.0
  to exactly L, so every row has the same shape (Petastorm's TensorFlow reader batches
  fixed shapes). The weights are the ln-count VALUEs of the raw files (1.0 for item intentions).
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

-- Item intentions of each featured row: the known ids, largest weight first, padded to item_intention_length
CREATE OR REPLACE TEMPORARY VIEW item_intention_top AS
SELECT split, sample_id,
       concat(transform(top, t -> t.idx),
              array_repeat(0, ${item_intention_length} - size(top))) AS ids,
       concat(transform(top, t -> CAST(t.weight AS FLOAT)),
              array_repeat(CAST(0 AS FLOAT), ${item_intention_length} - size(top))) AS weights
FROM (
  SELECT e.split, e.sample_id,
         slice(sort_array(collect_list(
                 named_struct('neg_weight', -e.weight, 'raw_id', e.raw_id, 'idx', v.`index`, 'weight', e.weight))),
               1, ${item_intention_length}) AS top
  FROM (SELECT r.split, r.sample_id, x.e.id AS raw_id, x.e.weight AS weight
        FROM featured_rows AS r
        LATERAL VIEW explode(r.item_intention) x AS e) AS e
  JOIN feature_vocab AS v ON v.feature = 'item_intention' AND v.raw_id = e.raw_id
  GROUP BY e.split, e.sample_id
);

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
        LATERAL VIEW stack(4,
            'user_categories', u.user_categories,
            'user_shops', u.user_shops,
            'user_brands', u.user_brands,
            'user_intentions', u.user_intentions) f AS feature, entries
        LATERAL VIEW explode(f.entries) x AS e) AS h
  JOIN feature_vocab AS v ON v.feature = h.feature AND v.raw_id = h.raw_id
  GROUP BY h.split, h.common_feature_index, h.feature
);

-- One row per user context, an ids and a weights column per history field
CREATE OR REPLACE TEMPORARY VIEW user_histories AS
SELECT *
FROM history_top
PIVOT (first(ids) AS ids, first(weights) AS weights
       FOR feature IN ('user_categories' AS user_categories,
                       'user_shops' AS user_shops,
                       'user_brands' AS user_brands,
                       'user_intentions' AS user_intentions));

-- Single-valued side features of each featured row, one (feature, index) pair per known id
CREATE OR REPLACE TEMPORARY VIEW featured_single AS
SELECT f.split, f.sample_id, f.feature, v.`index`
FROM (SELECT r.split, r.sample_id, s.feature, s.raw_id
      FROM featured_rows AS r
      LATERAL VIEW stack(11,
          'user_profile', r.user_profile,
          'user_group', r.user_group,
          'user_gender', r.user_gender,
          'user_age', r.user_age,
          'user_consumption', r.user_consumption,
          'user_consumption_2', r.user_consumption_2,
          'user_is_occupied', r.user_is_occupied,
          'user_geography', r.user_geography,
          'item_category', r.item_category,
          'item_shop', r.item_shop,
          'item_brand', r.item_brand) s AS feature, raw_id) AS f
JOIN feature_vocab AS v ON v.feature = f.feature AND v.raw_id = f.raw_id;

-- Each featured row's side features as indices (0 when missing or unknown), and its item intentions
CREATE OR REPLACE TEMPORARY VIEW featured AS
SELECT r.split, r.sample_id,
       coalesce(i.user_profile_index, 0) AS user_profile_index,
       coalesce(i.user_group_index, 0) AS user_group_index,
       coalesce(i.user_gender_index, 0) AS user_gender_index,
       coalesce(i.user_age_index, 0) AS user_age_index,
       coalesce(i.user_consumption_index, 0) AS user_consumption_index,
       coalesce(i.user_consumption_2_index, 0) AS user_consumption_2_index,
       coalesce(i.user_is_occupied_index, 0) AS user_is_occupied_index,
       coalesce(i.user_geography_index, 0) AS user_geography_index,
       coalesce(i.item_category_index, 0) AS item_category_index,
       coalesce(i.item_shop_index, 0) AS item_shop_index,
       coalesce(i.item_brand_index, 0) AS item_brand_index,
       coalesce(t.ids, array_repeat(0, ${item_intention_length})) AS item_intention_ids,
       coalesce(t.weights, array_repeat(CAST(0 AS FLOAT), ${item_intention_length})) AS item_intention_weights
FROM (SELECT split, sample_id FROM featured_rows) AS r
LEFT JOIN (SELECT *
           FROM featured_single
           PIVOT (first(`index`) FOR feature IN (
               'user_profile' AS user_profile_index,
               'user_group' AS user_group_index,
               'user_gender' AS user_gender_index,
               'user_age' AS user_age_index,
               'user_consumption' AS user_consumption_index,
               'user_consumption_2' AS user_consumption_2_index,
               'user_is_occupied' AS user_is_occupied_index,
               'user_geography' AS user_geography_index,
               'item_category' AS item_category_index,
               'item_shop' AS item_shop_index,
               'item_brand' AS item_brand_index))) AS i
  ON i.split = r.split AND i.sample_id = r.sample_id
LEFT JOIN item_intention_top AS t ON t.split = r.split AND t.sample_id = r.sample_id;
