"""Every citation of the design document resolves: it names docs/DESIGN.md, and the sections it cites exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
SOURCES = ("tedrec_fast", "kernels", "csrc", "bench", "tests", "docs", ".ci")
SUFFIXES = {".py", ".cu", ".cuh", ".h", ".cpp", ".md", ".yaml", ".sh", ""}
#: "DESIGN.md section 2", "sections 1 and 3", "§4", "section 1, item 6" (the section number is what counts)
CITED = re.compile(r"DESIGN\.md(?:'s)?\s*(?:(?:sections?|§)\s*(\d+)(?:\s*(?:and|,)\s*(\d+))?)?")


def citing_files() -> list[Path]:
    files = [REPO / "README.md"]
    for top in SOURCES:
        files += [p for p in (REPO / top).rglob("*") if p.is_file() and p.suffix in SUFFIXES
                  and "__pycache__" not in p.parts]
    return [p for p in files if p not in (DESIGN, Path(__file__).resolve())
            and "DESIGN.md" in p.read_text(errors="replace")]


def sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", DESIGN.read_text(), flags=re.M))


def test_the_design_document_has_its_sections():
    assert sections() == {str(i) for i in range(1, 8)}
    assert "### Large catalogs" in DESIGN.read_text()


def test_every_citation_names_docs_design_md_and_an_existing_section():
    bad = []
    known = sections()
    for path in citing_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in CITED.finditer(line):
                where = f"{path.relative_to(REPO)}:{lineno}"
                if not line[:match.start()].endswith("docs/"):
                    bad.append(f"{where}: cites DESIGN.md without its path docs/DESIGN.md")
                bad += [f"{where}: section {n} does not exist" for n in match.groups() if n and n not in known]
    assert citing_files(), "nothing cites the design document"
    assert bad == []
