"""index hits by story and rule for the one-alert-per-story check (issue #3)

A poll asks which rules already hit the stories its new copies joined; without
the index that was a scan of every hit, once per poll.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.create_index("ix_hits_story_rule", ["story_id", "rule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.drop_index("ix_hits_story_rule")
