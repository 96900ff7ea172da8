"""The files a release carries agree with each other: version, changelog, licence and citations."""
import configparser
import re
from pathlib import Path

import yaml

import randperc_plugins

REPO = Path(__file__).resolve().parent.parent
CITING = (REPO / "docs" / "citing.md").read_text()  # the BibTeX of the docs page "Citing"
SETUP = configparser.ConfigParser()
SETUP.read(REPO / "setup.cfg")


def test_version_is_semantic_and_defined_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+", randperc_plugins.__version__)
    assert SETUP["metadata"]["version"] == "attr: randperc_plugins.__version__"
    assert "version" not in yaml.safe_load((REPO / "CITATION.cff").read_text())


def test_changelog_describes_the_current_version():
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(), flags=re.M)
    assert versions[0] == randperc_plugins.__version__  # newest first
    assert "0.1.0" in versions


def test_licence_is_the_apache_2_text_setup_declares():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert SETUP["metadata"]["license"] == "Apache-2.0"
    assert yaml.safe_load((REPO / "CITATION.cff").read_text())["license"] == "Apache-2.0"


def test_citation_file_and_docs_bibtex_cite_the_same_papers():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    bibtex = re.search(r"^# Citing\n.*?```bibtex\n(.*?)```", CITING, flags=re.S | re.M).group(1)
    entries = re.split(r"\n(?=@)", bibtex.strip())
    assert len(entries) == len(cff["references"]) + 1  # the papers and the software
    for ref in cff["references"]:
        entry = next(e for e in entries if ref["title"] in e)
        authors = re.search(r"author\s*=\s*\{(.*)\},", entry).group(1).split(" and ")
        assert authors == [f"{a['family-names']}, {a['given-names']}" for a in ref["authors"]]
        assert f"year      = {{{ref['year']}}}" in entry
        if "start" in ref:
            assert f"pages     = {{{ref['start']}--{ref['end']}}}" in entry
    titles = [ref["title"] for ref in cff["references"]]
    assert titles == ["Generic Perceptual Loss for Modeling Structured Output Dependencies",
                      "Understanding and Simplifying Perceptual Distances"]
    assert "arXiv:2103.10571" in [i["value"] for i in cff["references"][0]["identifiers"]]
    assert "eprint    = {2103.10571}" in entries[0]
