-- Side features, step 4: the positives of both splits, label = 1, and the rows whose fields are mapped.
/*
  Reads   kept_samples, kept_items (step 3), ${database}.samples.
  Defines positives        the kept train rows whose label is 1, and every test row whose label is 1
                           (the test split is not filtered: it is mapped with the train vocabularies)
          featured_rows    the rows that need side features: the positives, and each kept item's
                           first train impression (which gives item_vocab its features)
  Param   label (click or conversion).

  Then lakerec/sql/map_features.sql (shared with the impressions job) maps every field of
  featured_rows through feature_vocab: it defines user_histories and featured, which step 5 reads.
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
