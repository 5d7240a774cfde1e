"""dnf's and yum-builddep's reason for not installing BuildRequires, picked from a layer's output."""

from __future__ import annotations

from xcpbuild.adapters import dnf

# What Debian's dnf printed in a build-dependency layer (colours included): the empty
# `_dnf_local` repository of its local plugin is skipped, the missing package is the reason.
BUILDDEP = """\
xcpbuild: file:///srv/repo/8/8.3/testing/x86_64  11 kB/s | 853  B     00:00
\x1b[91mError: Failed to download metadata for repo '_dnf_local': Cannot download repomd.xml
\x1b[0m
\x1b[91mIgnoring repositories: _dnf_local
\x1b[0m
\x1b[91mNo matching package to install: 'libfoo-devel'
\x1b[0m
No matching package to install: 'libfoo-devel'
\x1b[91mNot all dependencies satisfied
Error: Some packages could not be found.
"""

PROBLEM = """\
Error:
 Problem: conflicting requests
  - nothing provides libbar >= 2 needed by foo-devel-1.0-1.x86_64
"""


def test_the_missing_package_is_the_reason_not_a_skipped_repository() -> None:
    assert dnf.install_failure(BUILDDEP) == "No matching package to install: 'libfoo-devel'"


def test_each_unmet_dependency_is_named_once() -> None:
    assert dnf.install_failure(PROBLEM) == (
        "Problem: conflicting requests; nothing provides libbar >= 2 needed by foo-devel-1.0-1.x86_64"
    )
    assert dnf.install_failure("No match for argument: ocaml-foo\nError: Unable to find a match: ocaml-foo\n") == (
        "No match for argument: ocaml-foo"
    )
    assert dnf.install_failure("Error: No Package found for ocaml-findlib\n") == "No Package found for ocaml-findlib"


def test_a_repository_that_cannot_be_read_comes_first_then_what_is_missing_because_of_it() -> None:
    bad = "Failed to download metadata for repo 'xcpbuild-given-1': repomd.xml GPG signature verification error"
    output = f"Error: {bad}\nIgnoring repositories: xcpbuild-given-1\n{BUILDDEP}"
    assert dnf.install_failure(output) == f"{bad}; No matching package to install: 'libfoo-devel'"
    assert dnf.install_failure("something\nError: it broke\nfor good\n") == "Error: it broke for good"
