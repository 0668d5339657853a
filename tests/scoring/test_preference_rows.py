"""The teacher's output becomes one date's lake rows: usable sentences stored, the rest quarantined."""

import json

import pyarrow as pa

from instructrec_batch.lake.schemas import PREFERENCES, QUARANTINE
from instructrec_batch.scoring.preferences import OUTPUT_SCHEMA, date_rows


def test_usable_sentences_become_rows_and_the_rest_quarantine_rows_with_what_was_generated():
    written = pa.table({
        "user_id": ["u1", "u2"], "text": ["likes long role-playing games.", None],
        "raw_text": ["Likes long role-playing games. And", "ok"],
        "source_review_ids": [["r1", "r2"], ["r3"]], "reviews_fingerprint": [11, 22], "n_new_tokens": [9, 1],
    }, schema=OUTPUT_SCHEMA)

    rows = date_rows(written, "2026-12-01", "teacher/base", "run-7")

    assert rows.preferences.to_pylist() == [{
        "user_id": "u1", "text": "likes long role-playing games.", "source_review_ids": ["r1", "r2"],
        "reviews_fingerprint": 11, "n_new_tokens": 9, "run_date": "2026-12-01", "model": "teacher/base",
    }]
    (bad,) = rows.quarantine.to_pylist()
    assert (bad["run_date"], bad["stage"], bad["table_name"], bad["run_id"]) == ("2026-12-01", "preferences", "preferences", "run-7")
    assert json.loads(bad["row_json"]) == {"user_id": "u2", "generated": "ok"}
    assert "no usable sentence" in bad["reason"]
    assert rows.quarantine.column_names == QUARANTINE.schema.names
    assert set(rows.preferences.column_names) == set(PREFERENCES.schema.names)


def test_nothing_written_gives_empty_tables_with_the_columns():
    rows = date_rows(OUTPUT_SCHEMA.empty_table(), "2026-12-01", "teacher/base", "run-7")
    assert rows.preferences.num_rows == 0 and "model" in rows.preferences.column_names
    assert rows.quarantine.num_rows == 0 and "reason" in rows.quarantine.column_names
