"""Text messages in the store (pbx/messaging.py): each MESSAGE once, its delivery status,
the pending ones of an extension (delivered when it registers) and the list the API reads."""

from dataclasses import replace
from typing import Any

from sqlalchemy import Row, Select, func, insert, or_, select, update

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, MessageRecord
from ipbx.store.schema import messages, tenants


class MessageRows(Database):
    """The text messages of each tenant."""

    def save_message(
        self, record: MessageRecord, tenant: str = DEFAULT_TENANT
    ) -> tuple[MessageRecord, bool]:
        """`record` with its id and True; the one stored before and False when a
        message with the same Call-ID, CSeq and From tag is there (nothing is stored
        twice)."""
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            found = connection.execute(
                select(messages).where(
                    messages.c.tenant_id == tenant_id,
                    messages.c.call_id == record.call_id,
                    messages.c.cseq == record.cseq,
                    messages.c.from_tag == record.from_tag,
                )
            ).first()
            if found is not None:
                return _record(found), False
            values = {
                name: getattr(record, name) for name in MessageRecord.__slots__ if name != "id"
            }
            new_id = connection.execute(
                insert(messages).values(tenant_id=tenant_id, **values).returning(messages.c.id)
            ).scalar_one()
        return replace(record, id=new_id), True

    def set_message_status(
        self, message_id: int, status: str, when: float, trunk: str | None = None
    ) -> None:
        """The message's delivery status since `when` (and the trunk it left through)."""
        values: dict[str, object] = {"status": status, "status_time": when}
        if trunk is not None:
            values["trunk"] = trunk
        with self._engine.begin() as connection:
            connection.execute(update(messages).where(messages.c.id == message_id).values(**values))

    def pending_messages(self, recipient: str, tenant: str = DEFAULT_TENANT) -> list[MessageRecord]:
        """The messages waiting for extension `recipient`, oldest first."""
        query = self._of(tenant).where(
            messages.c.recipient == recipient,
            messages.c.status == "pending",
            messages.c.direction != "outbound",
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(messages.c.time, messages.c.id)).all()
        return [_record(row) for row in rows]

    def list_messages(
        self,
        extension: str | None = None,
        limit: int = 50,
        offset: int = 0,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[int, list[MessageRecord]]:
        """How many of the tenant's messages match, and the page of them from
        `offset`, newest first; those `extension` sent or received when given."""
        query = self._of(tenant)
        if extension is not None:
            query = query.where(
                or_(messages.c.sender == extension, messages.c.recipient == extension)
            )
        total = select(func.count()).select_from(query.subquery())
        query = query.order_by(messages.c.time.desc(), messages.c.id.desc())
        with self._engine.connect() as connection:
            count = connection.scalar(total) or 0
            rows = connection.execute(query.limit(limit).offset(offset)).all()
        return count, [_record(row) for row in rows]

    @staticmethod
    def _of(tenant: str) -> Select[Any]:
        return (
            select(messages)
            .join(tenants, tenants.c.id == messages.c.tenant_id)
            .where(tenants.c.domain == tenant)
        )


def _record(row: Row[tuple[object, ...]]) -> MessageRecord:
    return MessageRecord(**{name: getattr(row, name) for name in MessageRecord.__slots__})
