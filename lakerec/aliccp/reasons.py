"""Why a raw line was quarantined. One constant per rule; the ingest tests cover each one."""

EMPTY_LINE = "empty_line"
WRONG_COLUMN_COUNT = "wrong_column_count"
BAD_SAMPLE_ID = "bad_sample_id"  # not a positive integer
BAD_LABEL = "bad_label"  # click or conversion not 0/1
BAD_COMMON_FEATURE_INDEX = "bad_common_feature_index"  # empty or not hexadecimal
BAD_FEATURE_NUM = "bad_feature_num"  # not a non-negative integer
FEATURE_WITHOUT_SEPARATORS = "feature_without_separators"  # no FIELD\x02ID\x03VALUE shape
NON_NUMERIC_FEATURE_ID = "non_numeric_feature_id"
NON_NUMERIC_VALUE = "non_numeric_value"
FEATURE_NUM_MISMATCH = "feature_num_mismatch"  # feature_num != number of features listed
REPEATED_SINGLE_VALUED_FIELD = "repeated_single_valued_field"  # e.g. two item_id (205) features
DUPLICATE_COMMON_FEATURE_INDEX = "duplicate_common_feature_index"  # second and later common lines with one key
UNKNOWN_COMMON_FEATURE_INDEX = "unknown_common_feature_index"  # no valid common line with that key
CONVERSION_WITHOUT_CLICK = "conversion_without_click"  # click=0, conversion=1: a funnel anomaly
DUPLICATE_SAMPLE_ID = "duplicate_sample_id"  # second and later valid skeleton lines with one sample_id

ALL = (
    EMPTY_LINE, WRONG_COLUMN_COUNT, BAD_SAMPLE_ID, BAD_LABEL, BAD_COMMON_FEATURE_INDEX,
    BAD_FEATURE_NUM, FEATURE_WITHOUT_SEPARATORS, NON_NUMERIC_FEATURE_ID, NON_NUMERIC_VALUE,
    FEATURE_NUM_MISMATCH, REPEATED_SINGLE_VALUED_FIELD, DUPLICATE_COMMON_FEATURE_INDEX,
    UNKNOWN_COMMON_FEATURE_INDEX, CONVERSION_WITHOUT_CLICK, DUPLICATE_SAMPLE_ID,
)
