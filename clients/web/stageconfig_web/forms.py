"""The stage forms of the providers page: what a section shows (``StageForm``, built
from the server's ``StageView``), what a posted form asks for (``PostedUpdate``), and
where a server error about a field appears in the form.

The provider options come from the contract (``stageconfig_contract.facts``), with the
label and hint an admin sees. A new key is never part of a ``StageForm``: what is typed
into the password field is sent to the server and never rendered back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from stageconfig import ConfigSource, InvalidArgumentError, ProviderKind, StageType
from stageconfig.admin import RouteSpec, StageView
from stageconfig_contract.facts import PROVIDER_OPTIONS, ProviderOption
from stageconfig_web.display import age
from stageconfig_web.routes import posted_routes, routes_text
from stageconfig_web.sessions import Flash

OPTION_FIELDS: Mapping[ProviderKind, tuple[ProviderOption, ...]] = {
    ProviderKind(provider): options for provider, options in PROVIDER_OPTIONS.items()
}
"""Provider options the form offers, per provider (the contract's PROVIDER_OPTIONS)."""

OPTION_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(option.name for options in OPTION_FIELDS.values() for option in options)
)
"""Every option input a form may carry."""

_PLAIN_FIELDS = frozenset({"provider_kind", "api_key", "model", "comment"})


def form_field(server_field: str) -> str | None:
    """The form input a server's field name (google.rpc.BadRequest) is shown next to;
    None: the message belongs to the whole section."""
    if server_field in _PLAIN_FIELDS:
        return server_field
    option = server_field.removeprefix("options.")
    return option if option != server_field and option in OPTION_NAMES else None


def field_message(error: InvalidArgumentError) -> str:
    """The error's message without its ``field: `` prefix (it stands next to the field)."""
    prefix = f"{error.field}: "
    return error.message[len(prefix) :] if error.message.startswith(prefix) else error.message


@dataclass
class StageForm:
    """One stage's section of the page: what the server says plus the form's state."""

    view: StageView
    provider: str
    """The provider selected in the form."""
    model: str
    """The model selected in the form; empty: automatic."""
    options: dict[str, str] = field(default_factory=dict)
    """Option inputs' values by option name."""
    comment: str = ""
    expected_revision: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """Form field → message."""
    error: str = ""
    """A message for the whole section."""
    conflict: str = ""
    notices: list[Flash] = field(default_factory=list)
    """Messages from the last action on this stage (saved, refreshed…)."""
    key_was_entered: bool = False
    allow_unverified: bool = False
    """The "allow unverified key" box as the person left it."""
    rollout: dict[str, str] = field(default_factory=dict)
    """The "roll out to a cohort first" inputs as typed (``rollouts.ROLLOUT_INPUTS``)."""
    routes: str = ""
    """The *Fallback routes* box (``routes.routes_text``)."""

    @property
    def stage(self) -> str:
        """The stage's name (POEM…)."""
        return self.view.stage_type.value

    @property
    def status(self) -> str:
        """The badge text (UNSPECIFIED for a provider kind newer than this page)."""
        if self.view.config is not None:
            return self.view.config.status.value
        return "UNSPECIFIED" if self.view.unknown_provider_kind else "UNCONFIGURED"

    @property
    def models(self) -> list[str]:
        """The model select's options: the cache, plus the selected model if missing."""
        models = list(self.view.models)
        config = self.view.config
        if config is not None and config.model and config.model not in models:
            models.insert(0, config.model)
        return models

    @property
    def offers_a_switch(self) -> bool:
        """Whether this stage may choose among providers (a hint about switching
        provider makes sense only then)."""
        return len(self.view.allowed_providers) > 1

    @property
    def model_list_line(self) -> str:
        """What is known about the cached model list, in one sentence — never a count
        and a fetch time that contradict the selected model."""
        config = self.view.config
        if config is None:
            return (
                ""
                if self.view.unknown_provider_kind
                else "The model list is fetched when a key is saved."
            )
        if self.view.source is ConfigSource.FALLBACK:
            return "From the server's legacy env: no model list is kept for it."
        count, fetched = len(self.view.models), config.models_cache_updated_at
        models = f"{count} model{'' if count == 1 else 's'}"
        if count and fetched is not None:
            return f"{models}, fetched {age(fetched)}."
        if count:
            return f"{models} (when they were fetched is not known)."
        if fetched is not None:
            return f"The provider offered no models when asked {age(fetched)}."
        kept = f"; the saved model {config.model} is used as it is" if config.model else ""
        return f"Model list not fetched yet{kept}."

    @property
    def option_fields(self) -> tuple[tuple[ProviderKind, ProviderOption], ...]:
        """Option inputs this stage's providers can use, with the provider each is for."""
        seen: set[str] = set()
        fields: list[tuple[ProviderKind, ProviderOption]] = []
        for provider in self.view.allowed_providers:
            for option in OPTION_FIELDS.get(provider, ()):
                if option.name not in seen:
                    seen.add(option.name)
                    fields.append((provider, option))
        return tuple(fields)


def form_for(view: StageView) -> StageForm:
    """A section showing the server's state of one stage."""
    config = view.config
    if config is not None:
        provider = config.provider_kind.value
    else:  # nothing stored, or a provider this page does not know: offer the first allowed
        provider = view.allowed_providers[0].value if view.allowed_providers else ""
    return StageForm(
        view=view,
        provider=provider,
        model=config.model if config else "",
        options=dict(config.options) if config else {},
        expected_revision=view.revision,
        routes=routes_text(view),
    )


@dataclass
class PostedUpdate:
    """What one stage's posted form asks UpdateConfig for."""

    stage: StageType
    provider: ProviderKind
    new_key: str | None = field(repr=False)
    """The typed key; None keeps the stored one."""
    options: dict[str, str]
    """The options to send: those of the chosen provider that were filled in."""
    allow_unverified: bool
    """Store the key even if the provider could not verify it."""
    form: StageForm
    """The section to show again if the server refuses (the key left out)."""
    fallbacks: list[RouteSpec] | None = None
    """The fallback routes to send; None keeps the stored ones."""
    clear_fallbacks: bool = False
    routes_error: str = ""
    """Why the *Fallback routes* box could not be read (nothing is sent then)."""

    def write_arguments(self) -> dict[str, Any]:
        """The arguments ``update_config`` and ``start_rollout`` take alike from the form
        (the key, model, options, revision, comment and fallback routes)."""
        return {
            "api_key": self.new_key,
            "model": self.form.model or None,
            "options": self.options or None,
            "expected_revision": self.form.expected_revision,
            "comment": self.form.comment,
            "fallbacks": self.fallbacks,  # for a rollout: the candidate's own routes
            "clear_fallbacks": self.clear_fallbacks,
        }


def posted_stage(value: object) -> StageType | None:
    """The stage a form's ``stage_type`` names; None when it names none."""
    try:
        return StageType(value) if isinstance(value, str) else None
    except ValueError:
        return None


def posted_update(form: FormData) -> PostedUpdate | None:
    """The update a posted stage form asks for; None when the form is malformed."""

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    try:
        stage = StageType(text("stage_type"))
        provider = ProviderKind(text("provider_kind"))
        expected = int(text("expected_revision"))
    except ValueError:
        return None
    api_key = form.get("api_key")
    new_key = api_key if isinstance(api_key, str) and api_key != "" else None
    options = {
        option.name: text(option.name)
        for option in OPTION_FIELDS.get(provider, ())
        if text(option.name)  # an empty option keeps the stored one
    }
    submitted = StageForm(
        view=StageView(stage, ConfigSource.UNCONFIGURED, None, (), ()),  # replaced
        provider=provider.value,
        model=text("model"),
        options={name: text(name) for name in OPTION_NAMES},
        comment=text("comment"),
        expected_revision=expected,
        key_was_entered=new_key is not None,
        allow_unverified=form.get("allow_unverified") == "1",
        routes=text("fallbacks"),
    )
    update = PostedUpdate(stage, provider, new_key, options, submitted.allow_unverified, submitted)
    keys = form.get("fallback_keys")
    try:
        update.fallbacks, update.clear_fallbacks = posted_routes(
            submitted.routes,
            keys if isinstance(keys, str) else "",
            form.get("had_fallbacks") == "1",
        )
    except ValueError as error:
        update.routes_error = str(error)
    return update
