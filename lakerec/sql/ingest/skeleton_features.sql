-- skeleton_features: one row per feature of a valid skeleton line (split, sample_id, field,
-- feature_id, value), as the raw line held it.
-- A view, not a table: samples holds every feature of the line once (a single-valued field
-- as its column, a multi-valued one as its {id, weight} array, the rest in other_features),
-- so the explode (about 13 rows per impression) is not stored a second time. A query of one
-- field reads that field's column of samples only.
-- skeleton_feature_rows: one SELECT per field, from the field registry
-- (lakerec/schema/fields.py, documented in lakerec/sqlfiles.py).
CREATE OR REPLACE VIEW ${database}.skeleton_features AS
${skeleton_feature_rows}
UNION ALL
SELECT split, sample_id, x.field, x.id AS feature_id, x.weight AS value
FROM ${database}.samples LATERAL VIEW inline(other_features) x;
