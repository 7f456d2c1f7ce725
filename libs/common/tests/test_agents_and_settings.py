"""Agent templates and settings: pure, no I/O."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from callbot.common.agents import Agent, DataField, render_template
from callbot.common.settings import Settings


def _agent(**overrides: object) -> Agent:
    fields: dict[str, object] = {
        "agent_id": "demo",
        "name": "Demo",
        "greeting": "Hello {recipient.name}!",
        "prompt": "Be brief.",
    }
    return Agent.model_validate({**fields, **overrides})


def test_unknown_placeholders_are_rejected_when_the_agent_is_saved() -> None:
    with pytest.raises(ValidationError, match=r"greeting\n.*unknown placeholder \{customer\}"):
        _agent(greeting="Hello {customer}")


def test_malformed_templates_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"prompt\n.*malformed template"):
        _agent(prompt="Hello {recipient.name")


def test_required_variables_are_those_the_templates_use() -> None:
    agent = _agent(prompt="Ask about {variables.order_id} for {variables.company}.")
    assert agent.required_variables() == {"order_id", "company"}


def test_render_fills_recipient_variables_and_agent_name() -> None:
    text = render_template(
        "Hi {recipient.name}, {agent.name} here about order {variables.order}.",
        agent_name="Acme",
        recipient={"name": "Ada"},
        variables={"order": 42},
    )
    assert text == "Hi Ada, Acme here about order 42."


def test_render_leaves_a_missing_recipient_field_empty() -> None:
    assert render_template("Hi {recipient.name}!", agent_name="A", recipient={}, variables={}) == (
        "Hi !"
    )


def test_choice_fields_need_choices_and_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="no choices"):
        DataField(name="plan", description="Plan", type="choice")
    field = DataField(name="email", description="Email", type="email")
    with pytest.raises(ValidationError, match="duplicate field names"):
        _agent(data_to_fill=[field, field])


def test_agent_document_uses_the_agent_id_as_mongodb_id() -> None:
    document = _agent().to_document()
    assert document["_id"] == "demo"
    assert "agent_id" not in document
    assert Agent.model_validate(document).agent_id == "demo"


def test_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "supersecret-token")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://user:supersecret-pw@broker:5672/")
    monkeypatch.setenv("CALLBOT_API_KEYS", "k1, k2")
    settings = Settings()
    assert "supersecret" not in repr(settings)
    assert "supersecret" not in str(settings.model_dump())
    assert settings.api_keys == {"k1", "k2"}


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALOG_DEADLINE_MS", "20000")
    with pytest.raises(ValidationError, match="dialog_deadline_ms"):
        Settings()


def test_settings_defaults_are_safe() -> None:
    settings = Settings(twilio_auth_token=SecretStr(""))
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert not settings.api_keys
    assert settings.dialog_deadline_ms == 4000


def test_agent_files_are_object_locations_listed_once() -> None:
    agent = _agent(
        knowledge=["s3://acme-files/hours.md"],
        audio={"voicemail_message": "s3://acme-files/vm.wav"},
    )
    assert agent.audio.files() == {"voicemail_message": "s3://acme-files/vm.wav"}
    assert agent.audio.for_line("greeting") is None
    with pytest.raises(ValidationError, match=r"knowledge\.0\n.*expected s3://<bucket>/<key>"):
        _agent(knowledge=["https://example.com/hours.md"])
    with pytest.raises(ValidationError, match=r"documents listed twice"):
        _agent(knowledge=["s3://acme-files/a.md", "s3://acme-files/a.md"])
    with pytest.raises(ValidationError, match=r"audio\.greeting\n.*not an object location"):
        _agent(audio={"greeting": "greeting.wav"})
    relay = {"type": "conversation_relay"}
    _agent(transport=relay, audio={"voicemail_message": "s3://acme-files/vm.wav"})
    with pytest.raises(ValidationError, match=r"only voicemail_message can be a recording"):
        _agent(transport=relay, audio={"greeting": "s3://acme-files/hello.wav"})
