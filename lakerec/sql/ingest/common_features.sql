-- common_features: one row per feature of a valid common-features line (split,
-- common_feature_index, field, feature_id, value), as the raw line held it.
-- A view, not a table: user_contexts holds every feature of the line once (a single-valued
-- field as its column, a history field as its {id, weight} array, the rest in
-- other_features). A query of one field reads that field's column of user_contexts only.
-- common_feature_rows: one SELECT per field, from the field registry
-- (lakerec/schema/fields.py, documented in lakerec/sqlfiles.py).
CREATE OR REPLACE VIEW ${database}.common_features AS
${common_feature_rows}
UNION ALL
SELECT split, common_feature_index, x.field, x.id AS feature_id, x.weight AS value
FROM ${database}.user_contexts LATERAL VIEW inline(other_features) x;
