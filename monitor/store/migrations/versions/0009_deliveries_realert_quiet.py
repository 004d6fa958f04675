"""a partial index on the deliveries a realert window kept quiet

Every alert loaded for sending counts the hits of its rule that a realert
window kept quiet ("held back"). That query began with the rule's previous
alert to the sink, which read every delivery of the rule to that sink: after
13,000 hits of one rule the S4 soak's daemon sent 12 alerts a second. The quiet
rows are few; this index finds them (or that there are none) at once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

QUIET = "last_error = 'realert_window'"


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_realert_quiet", "deliveries", ["sink", "created_at"], unique=False,
        sqlite_where=sa.text(QUIET), postgresql_where=sa.text(QUIET),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_deliveries_realert_quiet", table_name="deliveries")
