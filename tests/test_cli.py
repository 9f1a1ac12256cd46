"""The real ``sgcrawl`` command in a subprocess: exit codes, one-line errors, export, README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import html, run_cli

ROOT = Path(__file__).resolve().parent.parent

SPEC_KEYS = {
    "url": str, "final_url": str, "status": (int, type(None)), "depth": int, "parent": (str, type(None)),
    "fetched_at": str, "elapsed_ms": (int, float), "content_type": (str, type(None)), "bytes": int,
    "title": (str, type(None)), "text": str, "links": int, "content_hash": str,
    "duplicate_of": (str, type(None)), "error": (str, type(None)),
}


async def small_site(make_site):
    return await make_site({
        "/": html("Héllo wörld", ["/a", "/b", "/gone"], body="<p>Ünïcödé body</p>"),
        "/a": html("A", ["/", "/b#frag"]),
        "/b": html("B", ["/a?x=1&y=2"]),
        "/a?x=1&y=2": html("A with query"),
    })


async def test_run_then_export_writes_spec_jsonl(make_site, tmp_path):
    site = await small_site(make_site)
    db = tmp_path / "c.db"
    res = await run_cli("run", site.url("/"), "--db", str(db), "--delay", "0", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "stored" in res.stdout
    res = await run_cli("export", "--db", str(db), "--out", "-", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 5  # /, /a, /b, /gone (404), /a?x=1&y=2
    recs = [json.loads(line) for line in lines]
    for rec in recs:
        for key, kind in SPEC_KEYS.items():
            assert isinstance(rec[key], kind), (key, rec[key])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["fetched_at"])
        assert re.fullmatch(r"[0-9a-f]{64}", rec["content_hash"])
    home = recs[0]
    assert home["title"] == "Héllo wörld" and "Ünïcödé body" in home["text"]
    assert home["parent"] is None and home["depth"] == 0
    assert {r["url"]: r["parent"] for r in recs}[site.url("/a")] == site.url("/")
    res = await run_cli("export", "--db", str(db), "--out", str(tmp_path / "x.jsonl"), "--no-text", cwd=tmp_path)
    assert res.returncode == 0
    no_text = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(no_text) == 5 and all("text" not in r for r in no_text)


async def test_run_with_export_flag_and_seeds_from_stdin(make_site, tmp_path):
    site = await small_site(make_site)
    out = tmp_path / "out" / "crawl.jsonl"
    res = await run_cli("run", "--seeds", "-", "--db", str(tmp_path / "c.db"), "--delay", "0",
                        "--export", str(out), "--max-pages", "2", cwd=tmp_path,
                        stdin=f"# a comment\n\n{site.url('/')}\n")
    assert res.returncode == 0, res.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


async def test_resume_of_finished_crawl_fetches_nothing_again(make_site, tmp_path):
    site = await small_site(make_site)
    args = ("run", site.url("/"), "--db", str(tmp_path / "c.db"), "--delay", "0")
    assert (await run_cli(*args, cwd=tmp_path)).returncode == 0
    first = len(site.page_log)
    res = await run_cli(*args, cwd=tmp_path)
    assert res.returncode == 0 and len(site.page_log) == first
    assert "Resumed" in res.stdout
    res = await run_cli(*args, "--fresh", cwd=tmp_path)
    assert res.returncode == 0 and len(site.page_log) == 2 * first


BAD_INPUT = [
    (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "many"], "--concurrency"),
    (["--max-pages", "ten"], "--max-pages"),
    (["--scope", "galaxy"], "--scope"),
    (["--delay", "-1"], "--delay"),
    (["--include", "(unclosed"], "--include"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--config", "missing.toml"], "missing.toml"),
    (["ftp://example.com/"], "ftp://example.com/"),
    (["not a url"], "not a url"),
]


@pytest.mark.parametrize("args, named", BAD_INPUT)
async def test_bad_flags_exit_2_with_one_line(args, named, tmp_path):
    seed = [] if any("://" in a or " " in a for a in args) else ["http://127.0.0.1:9/"]
    res = await run_cli("run", *seed, *args, cwd=tmp_path)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert named in lines[0]
    assert "Traceback" not in res.stderr


BAD_TOML = [
    ("[crawl]\nmax_pages = \"ten\"\n", "crawl.max_pages"),
    ("[fetch]\nconcurrency = 0\n", "fetch.concurrency"),
    ("[fetch]\ntimeout = \"soon\"\n", "fetch.timeout"),
    ("[fetch]\nspeed = 3\n", "fetch.speed"),
    ("[nonsense]\n", "nonsense"),
    ("[crawl\nscope = 1", "invalid TOML"),
    ("[crawl]\nscope = \"planet\"\n", "crawl.scope"),
    ("[robots]\nobey = \"yes\"\n", "robots.obey"),
]


@pytest.mark.parametrize("text, named", BAD_TOML)
async def test_bad_config_file_exits_2_naming_the_key(text, named, tmp_path):
    (tmp_path / "crawl.toml").write_text(text)
    res = await run_cli("run", "http://127.0.0.1:9/", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], res.stderr


async def test_cli_flag_beats_config_file(make_site, tmp_path):
    site = await make_site({"/": html("home", [f"/p{i}" for i in range(10)])})
    (tmp_path / "crawl.toml").write_text("[crawl]\nmax_pages = 2\n[fetch]\ndelay = 0.0\n")
    res = await run_cli("run", site.url("/"), "--max-pages", "4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(site.page_log) == 4
    assert (tmp_path / "output" / "crawl.db").is_file()  # the default --db


async def test_version_and_help(tmp_path):
    from crawler import __version__

    res = await run_cli("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"sgcrawl {__version__}"
    res = await run_cli("run", "--help", cwd=tmp_path)
    assert res.returncode == 0
    for flag in ("--max-pages", "--scope", "--per-host", "--delay", "--ignore-robots", "--export"):
        assert flag in res.stdout


async def test_export_of_missing_db_is_a_clear_error(tmp_path):
    res = await run_cli("export", "--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert res.returncode == 2 and "nope.db" in res.stderr and "Traceback" not in res.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = ci.strip().splitlines()[-1]
    assert command in readme


def test_default_crawl_toml_matches_the_built_in_defaults():
    from crawler.config import load_config

    assert load_config(ROOT / "crawl.toml", {}) == load_config(Path("/dev/null"), {})
