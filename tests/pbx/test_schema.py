"""A feature brings its configuration as a model of its own module: a list of Items in
the configuration file is found by its item model, provisioned under the list's key and
checked with the destinations each item says it holds."""

from typing import ClassVar

import pytest
from pydantic import Field
from pydantic_core import PydanticCustomError

from ipbx.config import Config
from ipbx.pbx.apps.ivr_config import IvrConfig
from ipbx.pbx.blacklist import BlacklistConfig
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import NumberConfig
from ipbx.pbx.provisioning import KINDS
from ipbx.pbx.schema import DestinationField, Item, Model, Name, item_lists


class QueueConfig(Item):
    """A feature the file does not have yet, written as a feature module would."""

    destination_kind: ClassVar[Kind | None] = Kind.QUEUE

    name: Name
    overflow: DestinationField = Destination(Kind.HANGUP)


class File(Model):
    realm: str = "ipbx"
    queues: list[QueueConfig] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


def test_the_lists_of_items_are_found_by_their_item_model() -> None:
    assert item_lists(File) == {"queues": QueueConfig}


def test_every_list_of_items_of_the_file_is_provisioned_in_the_files_order() -> None:
    assert list(KINDS) == [
        "extensions",
        "trunks",
        "numbers",
        "outbound_routes",
        "groups",
        "queues",
        "conferences",
        "ivrs",
        "schedules",
        "announcements",
        "blacklist",
        "webhooks",
    ]
    assert list(KINDS) == list(item_lists(Config))
    assert KINDS["extensions"].key_field == "number"
    assert KINDS["extensions"].secrets == {"password"}
    assert KINDS["webhooks"].any_tenant
    assert not KINDS["groups"].any_tenant


def test_an_item_is_named_by_its_key_field() -> None:
    assert QueueConfig(name="support").key() == "support"
    number = NumberConfig(number="+15550100", destination="hangup")  # type: ignore[arg-type]
    assert number.key() == "+15550100"


def test_a_blacklist_entry_of_one_extension_is_named_with_it() -> None:
    assert BlacklistConfig(pattern="+1555*").key() == "+1555*"
    assert BlacklistConfig(pattern="+1555*", extension="1001").key() == "+1555*@1001"


def test_a_list_refuses_a_key_used_twice_at_the_second_item() -> None:
    with pytest.raises(PydanticCustomError) as refused:
        QueueConfig.check_list([QueueConfig(name="a"), QueueConfig(name="a")], "queues")
    assert refused.value.message() == "name a is already used by queues[0]"
    assert refused.value.context is not None and refused.value.context["at"] == (1, "name")


def test_an_item_says_where_each_of_its_destinations_is_written() -> None:
    menu = IvrConfig.model_validate(
        {
            "name": "main",
            "greeting": "Welcome.",
            "options": {"1": "group:sales", "2": "queue:support"},
            "timeout_destination": "extension:1000",
        }
    )
    assert list(menu.destinations()) == [
        (("options", "1"), Destination(Kind.GROUP, "sales")),
        (("options", "2"), Destination(Kind.QUEUE, "support")),
        (("timeout_destination",), Destination(Kind.EXTENSION, "1000")),
        (("invalid_destination",), Destination(Kind.HANGUP)),
    ]
