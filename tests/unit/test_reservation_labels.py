"""The label a client offers with a reservation (client/reservation_wait.label): the CI job from
each vendor's own variables, LAGER_LOCK_HOLDER as a plain label, else user@host; and the box's
cleaning of whatever label arrives (box_agent/reservations.clean_text), against generated
hostile text. The label is shown beside the identity that logged in and trusted for nothing."""
from __future__ import annotations

import getpass
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from box_agent.reservations import MAX_LABEL, clean_text
from client.reservation_wait import _CI_LABELS, label
from lager.errors import LagerError

# Every variable label() reads: cleared first, so the CI this suite itself runs in (CI=true,
# GITHUB_ACTIONS...) does not leak into a row.
READ = {"LAGER_LOCK_HOLDER", *(marker for marker, _, _ in _CI_LABELS),
        *(name for _, names, _ in _CI_LABELS for name in names)}

# One row per vendor, with variables as each CI's documentation names them.
VENDORS = [
    ("github", {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/fw",
                "GITHUB_WORKFLOW": "nightly", "GITHUB_RUN_ID": "9876543210",
                "GITHUB_JOB": "hil"},
     "GitHub Actions acme/fw nightly run 9876543210 job hil"),
    ("gitlab", {"GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/firmware",
                "CI_JOB_NAME": "hil-test", "CI_JOB_ID": "4242"},
     "GitLab acme/firmware job hil-test #4242"),
    ("jenkins", {"JENKINS_URL": "https://ci.acme.example/", "JOB_NAME": "firmware/main",
                 "BUILD_NUMBER": "318"},
     "Jenkins firmware/main #318"),
    ("buildkite", {"BUILDKITE": "true", "BUILDKITE_PIPELINE_SLUG": "firmware",
                   "BUILDKITE_BUILD_NUMBER": "77", "BUILDKITE_LABEL": ":zap: bench"},
     "Buildkite firmware #77 :zap: bench"),
    ("circleci", {"CIRCLECI": "true", "CIRCLE_PROJECT_REPONAME": "firmware",
                  "CIRCLE_BUILD_NUM": "1201", "CIRCLE_JOB": "hil"},
     "CircleCI firmware #1201 hil"),
    ("azure", {"TF_BUILD": "True", "BUILD_DEFINITIONNAME": "firmware-ci",
               "BUILD_BUILDNUMBER": "20261205.3"},
     "Azure Pipelines firmware-ci 20261205.3"),
    ("travis", {"TRAVIS": "true", "TRAVIS_REPO_SLUG": "acme/firmware",
                "TRAVIS_JOB_NUMBER": "55.2"},
     "Travis acme/firmware job 55.2"),
]


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in READ:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("vendor", "variables", "expected"), VENDORS,
                         ids=[row[0] for row in VENDORS])
def test_each_ci_names_its_job(bare_env: pytest.MonkeyPatch, vendor: str,
                               variables: dict[str, str], expected: str) -> None:
    for name, value in variables.items():
        bare_env.setenv(name, value)
    assert label() == expected


def test_every_vendor_the_client_knows_has_a_row() -> None:
    assert {marker for marker, _, _ in _CI_LABELS} == \
        {next(iter(variables)) for _, variables, _ in VENDORS}


def test_a_variable_the_ci_left_out_shows_as_a_question_mark(
        bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("GITLAB_CI", "true")
    bare_env.setenv("CI_PROJECT_PATH", "acme/fw")
    assert label() == "GitLab acme/fw job ? #?"


def test_lager_lock_holder_is_a_plain_label_that_wins(bare_env: pytest.MonkeyPatch) -> None:
    """The real lager's override names the holder; here it is only the label, and it wins
    over the CI's own variables (trimmed, and otherwise as given)."""
    bare_env.setenv("GITHUB_ACTIONS", "true")
    bare_env.setenv("LAGER_LOCK_HOLDER", "  release bot (nightly)  ")
    assert label() == "release bot (nightly)"
    bare_env.setenv("LAGER_LOCK_HOLDER", "   ")  # blank is not given
    assert label().startswith("GitHub Actions ")


def test_a_laptop_is_user_at_host(bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("CI", "true")  # CI=true alone names no vendor: it decides waiting only
    assert label() == f"{getpass.getuser()}@{socket.gethostname()}"


@given(st.text(max_size=400))
def test_the_box_keeps_only_printable_text_of_a_label(text: str) -> None:
    cleaned = clean_text(text, MAX_LABEL, "label")
    assert len(cleaned) <= MAX_LABEL
    assert cleaned == cleaned.strip()
    assert all(c.isprintable() for c in cleaned)  # no escapes into other people's terminals


@pytest.mark.parametrize("value", [3, ["a"], {"x": 1}, True])
def test_a_label_that_is_not_text_is_refused(value: object) -> None:
    with pytest.raises(LagerError, match="label must be a string"):
        clean_text(value, MAX_LABEL, "label")
