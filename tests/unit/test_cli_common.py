"""What every command shares: one-line errors, `-o` rendering, Go's tabwriter (no cluster)."""

from __future__ import annotations

import json

import pytest

from imagestream.cli.common import CommandError, ServerSaid, error_line, render
from imagestream.cli.main import build_parser
from imagestream.cli.tabwriter import tabwrite
from imagestream.kube.errors import NotFound, Retryable, translate_status


def test_errors_are_one_line_in_kubectl_words() -> None:
    status = json.dumps({"message": 'imagestreams.image.openshift.io "app" not found'})
    assert error_line(translate_status(404, status, None)) == (
        'Error from server (NotFound): imagestreams.image.openshift.io "app" not found'
    )
    assert error_line(NotFound("404: x", status=404)) == "Error from server (NotFound): x"
    assert error_line(Retryable("GET /x: ClientConnectorError: refused")) == (
        "error: cannot reach the API server: GET /x: ClientConnectorError: refused"
    )
    assert error_line(CommandError("two\nlines")) == "error: two lines"
    assert error_line(ServerSaid("NotFound", "gone")) == "Error from server (NotFound): gone"


def test_output_formats() -> None:
    assert render({"b": 1, "a": [1]}, "json") == '{\n    "b": 1,\n    "a": [\n        1\n    ]\n}\n'
    assert render({"b": 1, "a": [1]}, "yaml") == "a:\n- 1\nb: 1\n"


def test_usage_errors_exit_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["tag", "--bogus-flag"])
    assert exit_info.value.code == 1
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_every_command_takes_kubectl_connection_flags() -> None:
    parser = build_parser()
    for argv in (
        ["tag", "a:b", "c:d"],
        ["import-image", "app"],
        ["set", "triggers", "deploy/web"],
        ["set", "image-lookup", "app"],
        ["describe", "is/app"],
        ["explain", "deploy/web"],
        ["rollout", "status", "dc/web"],
        ["start-build", "app"],
    ):
        args = parser.parse_args([*argv, "--context", "c", "-n", "ns", "--kubeconfig", "/k"])
        assert (args.context, args.namespace, args.kubeconfig) == ("c", "ns", "/k")
        before = parser.parse_args(["-n", "ns", "--context", "c", *argv])
        assert (before.global_namespace, before.global_context) == ("ns", "c")


def test_tabwriter_matches_go() -> None:
    # Go: tabwriter.NewWriter(out, 0, 8, 1, '\t', 0), as oc describe.
    text = (
        "Name:\tapp\nNamespace:\tdemo\nImage Repository:\tr/x\n\n"
        "v1\n      5 minutes ago\tsha256:abc\n"
    )
    assert tabwrite(text, minwidth=0, tabwidth=8, padding=1, padchar="\t") == (
        "Name:\t\t\tapp\nNamespace:\t\tdemo\nImage Repository:\tr/x\n\nv1\n"
        "      5 minutes ago\tsha256:abc\n"
    )
    # Go: tabwriter.NewWriter(out, 0, 2, 2, ' ', 0), as oc set triggers prints its table;
    # an empty cell is padded too, the last cell never; a trailing empty cell is dropped.
    table = "A\tB\tC\nlonger\t\tz\nx\ty\t"
    assert tabwrite(table, minwidth=0, tabwidth=2, padding=2, padchar=" ") == (
        "A       B  C\nlonger     z\nx       y"
    )
