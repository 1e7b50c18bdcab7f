"""A model name that cannot be a model gets one line before any compute: a folder without a model,
a Hub id that cannot be resolved offline, a Hub id the Hub does not know (its 404 answer built
here: no network in tests)."""
from __future__ import annotations

import pytest
import requests
from huggingface_hub.errors import RepositoryNotFoundError

from adapter_stilts.models.loading import ModelError, check_model_name, hub_model_error


def _not_found(name: str) -> RepositoryNotFoundError:
    response = requests.Response()
    response.status_code = 404
    response.url = f"https://huggingface.co/api/models/{name}"
    response.headers["X-Error-Code"] = "RepoNotFound"
    return RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: {response.url}.",
                                   response=response)


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelError) as e:
        check_model_name(str(tmp_path))
    assert _one_line(e) == f"model.name: folder '{tmp_path}' is not a model (no config.json in it)"


def test_a_hub_id_that_cannot_be_resolved_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        check_model_name("xlm-roberta-bas")
    assert "model.name: 'xlm-roberta-bas' is not in the local Hugging Face cache and cannot be fetched offline" in \
        _one_line(e) and "did you mean 'xlm-roberta-base'?" in str(e.value)


def test_a_hub_id_the_hub_does_not_know(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def hub_answers_404(name, *args, **kwargs):
        raise _not_found(name)

    monkeypatch.setattr("huggingface_hub.model_info", hub_answers_404)
    with pytest.raises(ModelError) as e:
        check_model_name("FacebookAI/xlm-roberta-larg")
    assert _one_line(e) == ("model.name: 'FacebookAI/xlm-roberta-larg' does not exist on the Hugging Face Hub "
                            "(or is private); did you mean 'FacebookAI/xlm-roberta-large'?")


def test_no_answer_from_the_hub_is_not_a_verdict():
    assert hub_model_error("xlm-roberta-base", ConnectionError("no route to host")) is None
