"""A minimal, in-memory Hugging Face Hub API server for tests (stdlib only).

`FakeHub` answers the subset of the Hub HTTP API that huggingface_hub 0.36 uses for creating repos, committing
files (preupload + NDJSON commit, always in "regular" upload mode so contents arrive inline as base64), reading repo
info, listing trees/refs/commits, branches and downloading files through ``/{repo_id}/resolve/{revision}/{path}``.

The `hub` fixture starts one, points huggingface_hub (and transformers/datasets, when already imported) at it,
turns offline mode off and xet off, and gives huggingface_hub a fresh HF_HOME/cache in a tmp dir; `hub_logged_in`
also sets ``HF_TOKEN`` to the hub's token; `serve_fake_hub` does the same as a context manager. In a test module,
bind them by assignment (``hub = tests.hub_server.hub``) or import them with ``# noqa: F811`` on the parameters.

Test helpers on `FakeHub`: `files`, `commits`, `add_repo` (seed a repo without HTTP), `repo_ids`, `is_private`,
`requests` (every ``(method, path)`` received) and `unhandled` (those that matched no route and got a 404).

Notes on fidelity:
- Creating a repo makes an empty "initial commit" (as the Hub does, minus its ``.gitattributes``), so a new repo has a
  ``sha``, and `FakeHub.commits` lists that initial commit first.
- Tokens: a request without ``Authorization`` is anonymous; one with a token other than ``FakeHub.token`` gets 401
  "Invalid credentials in Authorization header" (as the Hub answers). Writes need the token. Private repos answer
  404 ``RepoNotFound`` to anonymous reads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest


REPO_TYPES = ("model", "dataset", "space")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_ACTIONS = ("revision", "preupload", "commit", "branch", "tree", "refs", "commits", "paths-info")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag / oid of regular (non-LFS) files."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> head commit sha
    commits: dict[str, Commit] = field(default_factory=dict)


class HubError(Exception):
    """Turned into an HTTP error answer by the request handler."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more keys for the JSON body


class FakeHub:
    """An in-memory Hub on ``http://127.0.0.1:<free port>``; see the module docstring."""

    def __init__(self, token: str = "hf_test_token", username: str = "test-user"):
        self.token = token
        self.username = username
        self.url = ""
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []  # requests that matched no route (answered 404)
        self._repos: dict[tuple[str, str], Repo] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection / seeding helpers for tests
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The repo's files at `revision` (a branch name or a commit sha)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return dict(repo.commits[self._resolve(repo, revision)].files)

    def commits(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> list[str]:
        """Commit shas reachable from `branch`, oldest first (starting with the repo's initial commit)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return [c.sha for c in reversed(self._history(repo, self._resolve(repo, branch)))]

    def repo_ids(self, repo_type: str = "model") -> list[str]:
        with self._lock:
            return sorted(rid for (rtype, rid) in self._repos if rtype == repo_type)

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._get_repo(repo_type, repo_id).private

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        private: bool = False,
        repo_type: str = "model",
        message: str = "Seed files",
    ) -> str:
        """Create a repo server-side (no HTTP), optionally with a first commit of `files`; returns main's sha."""
        with self._lock:
            repo = self._create_repo(repo_type, repo_id, private)
            if files:
                head = repo.branches["main"]
                new_files = dict(repo.commits[head].files)
                new_files.update({path: bytes(data) for path, data in files.items()})
                self._add_commit(repo, "main", new_files, message, "")
            return repo.branches["main"]

    # ------------------------------------------------------------------ state (call with the lock held)
    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        if (repo_type, repo_id) in self._repos:
            # The Hub's 409 carries the url: create_repo(exist_ok=True) reads it from the error body.
            raise HubError(
                409, f"You already created this {repo_type} repo", extra={"url": self._repo_url(repo_type, repo_id)}
            )
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
        self._repos[(repo_type, repo_id)] = repo
        repo.branches["main"] = ""
        self._add_commit(repo, "main", {}, "initial commit", "", parent=None)
        return repo

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def _new_sha(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((str(self._counter), *parts)).encode()).hexdigest()

    def _add_commit(
        self, repo: Repo, branch: str, files: dict[str, bytes], title: str, message: str, parent: str | None = ""
    ) -> Commit:
        parent = repo.branches.get(branch) if parent == "" else parent
        listing = ",".join(f"{p}:{git_blob_sha(d)}" for p, d in sorted(files.items()))
        sha = self._new_sha(repo.repo_id, parent or "", title, listing)
        commit = Commit(sha=sha, parent=parent or None, files=files, title=title, message=message, date=_now())
        repo.commits[sha] = commit
        repo.branches[branch] = sha
        return commit

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in repo.branches:
            return repo.branches[revision[len("refs/heads/") :]]
        if _SHA_RE.match(revision) and revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _history(self, repo: Repo, sha: str) -> list[Commit]:
        """Commits from `sha` back to the root, newest first."""
        out = []
        current: str | None = sha
        while current is not None:
            commit = repo.commits[current]
            out.append(commit)
            current = commit.parent
        return out


# ---------------------------------------------------------------------- HTTP layer
class _Handler(BaseHTTPRequestHandler):
    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/0.1"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    # ---- plumbing
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        body = self._body
        try:
            data = json.loads(body or b"{}")
        except ValueError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from None
        if not isinstance(data, dict):
            raise HubError(400, "JSON body must be an object")
        return data

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None):
        self.send_response(status)
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, data, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers, "application/json; charset=utf-8")

    def _dispatch(self, method: str):
        hub = self.fake_hub
        split = urlsplit(self.path)
        self._query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._body = self._read_body()
        with hub._lock:
            hub.requests.append((method, split.path))
        try:
            self._authenticate()
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            self._route(method, segments)
        except HubError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            self._send_json({"error": err.message, **err.extra}, err.status, headers)
        except Exception as err:  # a bug in the fake: make it visible to the client
            self._send_json({"error": f"FakeHub internal error: {err!r}"}, 500)

    def _authenticate(self):
        auth = self.headers.get("Authorization")
        self._token = None
        if auth is None:
            return
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.fake_hub.token:
            raise HubError(401, INVALID_CREDENTIALS)
        self._token = token.strip()

    def _require_token(self):
        if self._token is None:
            raise HubError(401, "You must be authenticated to perform this action")

    # ---- routing
    def _route(self, method: str, seg: list[str]):
        if seg[:1] == ["api"]:
            return self._route_api(method, seg[1:])
        # /[datasets/|spaces/]{repo_id}/resolve/{revision}/{path}
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type = seg[0][:-1]
            seg = seg[1:]
        for i in (1, 2):
            if len(seg) > i + 2 and seg[i] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve_file(repo_type, "/".join(seg[:i]), seg[i + 1], "/".join(seg[i + 2 :]))
        self._no_route(method)

    def _no_route(self, method: str):
        with self.fake_hub._lock:
            self.fake_hub.unhandled.append((method, self.path))
        raise HubError(404, f"FakeHub: no route for {method} {self.path}")

    def _route_api(self, method: str, seg: list[str]):
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if seg == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if seg == ["validate-yaml"] and method == "POST":  # sent before committing a README.md: accept any metadata
            return self._send_json({"errors": [], "warnings": []})
        if seg == ["whoami-v2"] and method == "GET":
            self._require_token()
            return self._send_json({"type": "user", "name": self.fake_hub.username, "orgs": []})
        if len(seg) < 2 or seg[0] not in ("models", "datasets", "spaces"):
            self._no_route(method)
        repo_type = seg[0][:-1]
        rest = seg[1:]
        if len(rest) >= 3 and rest[2] in _REPO_ACTIONS:
            repo_id, action, args = "/".join(rest[:2]), rest[2], rest[3:]
        elif len(rest) >= 2 and rest[1] in _REPO_ACTIONS:
            repo_id, action, args = rest[0], rest[1], rest[2:]
        elif len(rest) <= 2:
            repo_id, action, args = "/".join(rest), None, []
        else:
            self._no_route(method)

        if action is None and method == "GET":
            return self._repo_info(repo_type, repo_id, None)
        if action == "revision" and method == "GET" and args:
            return self._repo_info(repo_type, repo_id, "/".join(args))
        if action == "preupload" and method == "POST" and args:
            return self._preupload(repo_type, repo_id, "/".join(args))
        if action == "commit" and method == "POST" and args:
            return self._commit(repo_type, repo_id, "/".join(args))
        if action == "branch" and method in ("POST", "DELETE") and args:
            return self._branch(method, repo_type, repo_id, "/".join(args))
        if action == "tree" and method == "GET" and args:
            return self._tree(repo_type, repo_id, args[0], "/".join(args[1:]))
        if action == "paths-info" and method == "POST" and args:
            return self._paths_info(repo_type, repo_id, "/".join(args))
        if action == "refs" and method == "GET":
            return self._refs(repo_type, repo_id)
        if action == "commits" and method == "GET" and args:
            return self._list_commits(repo_type, repo_id, "/".join(args))
        self._no_route(method)

    # ---- access control
    def _readable_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.fake_hub._get_repo(repo_type, repo_id)
        if repo.private and self._token is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _writable_repo(self, repo_type: str, repo_id: str) -> Repo:
        self._require_token()
        return self.fake_hub._get_repo(repo_type, repo_id)

    # ---- endpoints
    def _create_repo(self):
        self._require_token()
        body = self._json_body()
        name, organization = body.get("name"), body.get("organization")
        repo_type = body.get("type") or "model"
        if not isinstance(name, str) or not name or repo_type not in REPO_TYPES:
            raise HubError(400, "Invalid repo name or type")
        repo_id = f"{organization or self.fake_hub.username}/{name}"
        with self.fake_hub._lock:
            self.fake_hub._create_repo(repo_type, repo_id, bool(body.get("private")))
        self._send_json({"url": self.fake_hub._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})

    def _delete_repo(self):
        self._require_token()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        organization = body.get("organization") or self.fake_hub.username
        repo_id = f"{organization}/{body.get('name')}"
        with self.fake_hub._lock:
            self.fake_hub._get_repo(repo_type, repo_id)
            del self.fake_hub._repos[(repo_type, repo_id)]
        self._send(200)

    def _repo_info(self, repo_type: str, repo_id: str, revision: str | None):
        hub = self.fake_hub
        with hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            sha = hub._resolve(repo, revision or "main")
            commit = repo.commits[sha]
            with_blobs = self._query.get("blobs", "").lower() in ("1", "true")
            siblings = []
            for path, data in sorted(commit.files.items()):
                sibling = {"rfilename": path}
                if with_blobs:
                    sibling.update(size=len(data), blobId=git_blob_sha(data))
                siblings.append(sibling)
            author = repo_id.split("/")[0] if "/" in repo_id else None
            info = {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": author,
                "sha": sha,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "xetEnabled": False,
            }
            if repo_type == "model":
                info["modelId"] = repo_id
            elif repo_type == "space":
                info.update(sdk="static", runtime=None)
            self._send_json(info)

    def _check_branch(self, repo: Repo, revision: str) -> str:
        if self._query.get("create_pr", "") not in ("", "0", "false"):
            raise HubError(400, "FakeHub does not support create_pr")
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if branch not in repo.branches:
            if _SHA_RE.match(revision) and revision in repo.commits:
                raise HubError(400, "FakeHub: commits must target a branch, not a commit sha")
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return branch

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        hub = self.fake_hub
        body = self._json_body()
        with hub._lock:
            repo = self._writable_repo(repo_type, repo_id)
            branch = self._check_branch(repo, revision)
            current = repo.commits[repo.branches[branch]].files
        files = body.get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload: 'files' must be a list")
        answer = []
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise HubError(400, "preupload: malformed file entry")
            existing = current.get(item["path"])
            answer.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha(existing) if existing is not None else None,
                }
            )
        self._send_json({"files": answer, "commitOid": repo.branches[branch]})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        hub = self.fake_hub
        # Parse and validate the whole NDJSON payload before touching any state: a bad line aborts the commit.
        try:
            lines = [json.loads(line) for line in self._body.decode("utf-8").splitlines() if line.strip()]
        except ValueError as err:
            raise HubError(400, f"Malformed NDJSON commit payload: {err}") from None
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a header line")
        header = lines[0].get("value")
        if not isinstance(header, dict) or not isinstance(header.get("summary"), str):
            raise HubError(400, "Commit header must have a 'summary'")
        operations = []
        for line in lines[1:]:
            value = line.get("value") if isinstance(line, dict) else None
            if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
                raise HubError(400, f"Malformed commit operation: {line!r}")
            key = line.get("key")
            if key == "file":
                if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                    raise HubError(400, f"Unsupported file encoding for {value['path']}")
                try:
                    content = base64.b64decode(value["content"], validate=True)
                except ValueError:
                    raise HubError(400, f"Invalid base64 content for {value['path']}") from None
                operations.append(("file", value["path"], content))
            elif key in ("deletedFile", "deletedFolder"):
                operations.append((key, value["path"], None))
            elif key == "lfsFile":
                raise HubError(400, "FakeHub only accepts regular (inline) files; got an LFS pointer")
            else:
                raise HubError(400, f"Unknown commit operation key: {key!r}")

        with hub._lock:
            repo = self._writable_repo(repo_type, repo_id)
            branch = self._check_branch(repo, revision)
            head = repo.branches[branch]
            parent_commit = header.get("parentCommit")
            if parent_commit is not None and parent_commit != head:
                raise HubError(412, f"Parent commit {parent_commit} is not the head of {branch} ({head})")
            files = dict(repo.commits[head].files)
            for key, path, content in operations:
                if key == "file":
                    files[path] = content
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[path]
                else:
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
                    for p in doomed:
                        del files[p]
            commit = hub._add_commit(repo, branch, files, header["summary"], header.get("description") or "")
        self._send_json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{hub._repo_url(repo_type, repo_id)}/commit/{commit.sha}",
                "hookOutput": "",
            }
        )

    def _branch(self, method: str, repo_type: str, repo_id: str, branch: str):
        hub = self.fake_hub
        body = self._json_body() if method == "POST" else {}
        with hub._lock:
            repo = self._writable_repo(repo_type, repo_id)
            if method == "DELETE":
                if branch not in repo.branches:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == "main":
                    raise HubError(403, "Cannot delete the main branch")
                del repo.branches[branch]
            else:
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}")
                start = hub._resolve(repo, body.get("startingPoint") or "main")
                repo.branches[branch] = start
        self._send_json({})

    def _file_entries(self, files: dict[str, bytes], base: str, recursive: bool) -> list[dict]:
        prefix = base.strip("/") + "/" if base.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            parts = rel.split("/")
            for depth in range(1, len(parts)):  # folders on the way
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": git_blob_sha(folder.encode())})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
        return list(entries.values())

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        hub = self.fake_hub
        with hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            files = repo.commits[hub._resolve(repo, revision)].files
        recursive = self._query.get("recursive", "").lower() in ("1", "true")
        entries = self._file_entries(files, path, recursive)
        if path.strip("/") and not entries:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        self._send_json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        hub = self.fake_hub
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            paths = parse_qs(self._body.decode(), keep_blank_values=True).get("paths", [])  # what get_paths_info sends
        else:
            paths = self._json_body().get("paths") or []
        with hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            files = repo.commits[hub._resolve(repo, revision)].files
        out = []
        for path in paths:
            if path in files:
                out.append({"type": "file", "path": path, "size": len(files[path]), "oid": git_blob_sha(files[path])})
            elif any(p.startswith(path.rstrip("/") + "/") for p in files):
                out.append({"type": "directory", "path": path, "oid": git_blob_sha(path.encode())})
        self._send_json(out)

    def _refs(self, repo_type: str, repo_id: str):
        with self.fake_hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                for name, sha in sorted(repo.branches.items())
            ]
        self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _list_commits(self, repo_type: str, repo_id: str, revision: str):
        hub = self.fake_hub
        with hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            history = hub._history(repo, hub._resolve(repo, revision))
        self._send_json(
            [
                {
                    "id": c.sha,
                    "authors": [{"user": hub.username}],
                    "date": c.date,
                    "title": c.title,
                    "message": c.message,
                }
                for c in history
            ]
        )

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str):
        hub = self.fake_hub
        with hub._lock:
            repo = self._readable_repo(repo_type, repo_id)
            sha = hub._resolve(repo, revision)
            data = repo.commits[sha].files.get(path)
        if data is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        status, body = 200, data
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)) and self.command == "GET":
            first, last = match.groups()
            if first:
                start, end = int(first), int(last) if last else len(data) - 1
            else:
                start, end = max(0, len(data) - int(last)), len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data) or start > end:
                raise HubError(
                    416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        self._send(status, body, headers, "application/octet-stream")


# ---------------------------------------------------------------------- pytest fixture
def patch_huggingface_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: str) -> None:
    """Point every cached copy of the Hub endpoint / offline flag / cache paths at `endpoint` and `home`.

    huggingface_hub reads its environment once, into `huggingface_hub.constants`, at import; some modules then copy
    a constant (``from ..constants import ENDPOINT``), `huggingface_hub.hf_api.api` (behind the module-level
    functions such as `upload_folder`) copied the endpoint when built, and transformers/datasets keep their own
    copies. Environment variables are set as well, for anything imported later.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    endpoint = endpoint.rstrip("/")
    hub_cache = os.path.join(home, "hub")
    assets_cache = os.path.join(home, "assets")
    xet_cache = os.path.join(home, "xet")
    token_path = os.path.join(home, "token")

    for key, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": home,
        "HF_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets_cache,
        "HF_XET_CACHE": xet_cache,
        "HF_TOKEN_PATH": token_path,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HF_HUB_ENABLE_HF_TRANSFER"):
        monkeypatch.delenv(key, raising=False)
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)

    new_values = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_ENABLE_HF_TRANSFER": False,
        "HF_HOME": home,
        "hf_cache_home": home,
        "default_cache_path": hub_cache,
        "default_assets_cache_path": assets_cache,
        "default_xet_cache_path": xet_cache,
        "HF_HUB_CACHE": hub_cache,
        "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets_cache,
        "HUGGINGFACE_ASSETS_CACHE": assets_cache,
        "HF_XET_CACHE": xet_cache,
        "HF_TOKEN_PATH": token_path,
        "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
    }
    old_values = {attr: getattr(constants, attr, None) for attr in new_values}
    for attr, value in new_values.items():
        monkeypatch.setattr(constants, attr, value, raising=False)
    # Every other huggingface_hub module holding a copy (`from ..constants import X`, or the package's lazy exports).
    for name, module in list(sys.modules.items()):
        if (
            module is None
            or module is constants
            or not (name == "huggingface_hub" or name.startswith("huggingface_hub."))
        ):
            continue
        namespace = getattr(module, "__dict__", {})
        for attr, value in new_values.items():
            if attr in namespace and old_values[attr] is not None and namespace[attr] == old_values[attr]:
                monkeypatch.setattr(module, attr, value)

    # The module-level functions (huggingface_hub.upload_folder, create_repo, ...) are bound methods of a HfApi
    # built at import time, which copied the endpoint then.
    hf_api = sys.modules.get("huggingface_hub.hf_api")
    if hf_api is not None and hasattr(hf_api, "api"):
        monkeypatch.setattr(hf_api.api, "endpoint", endpoint)

    # Libraries that cache the endpoint / offline flag at their own import (only if already imported; a later
    # import reads the patched environment).
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        for attr, value in {
            "_is_offline_mode": False,
            "HUGGINGFACE_CO_RESOLVE_ENDPOINT": endpoint,
            "HUGGINGFACE_CO_PREFIX": endpoint + "/{model_id}/resolve/{revision}/{filename}",
            "HUGGINGFACE_CO_EXAMPLES_TELEMETRY": endpoint + "/api/telemetry/examples",
        }.items():
            monkeypatch.setattr(transformers_hub, attr, value, raising=False)
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        for attr, value in {
            "HF_ENDPOINT": endpoint,
            "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False,
            "HF_DATASETS_OFFLINE": False,
        }.items():
            monkeypatch.setattr(datasets_config, attr, value, raising=False)

    # Sessions are cached per thread, and one built while offline has an adapter that refuses every request.
    _http.reset_sessions()


@contextlib.contextmanager
def serve_fake_hub(home: str, logged_in: bool = False) -> Iterator[FakeHub]:
    """Start a `FakeHub` and point huggingface_hub at it until exit (what the fixtures do, usable without pytest)."""
    from huggingface_hub.utils import _http

    fake = FakeHub().start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            patch_huggingface_hub(mp, fake.url, home)
            if logged_in:
                mp.setenv("HF_TOKEN", fake.token)
            yield fake
    finally:
        _http.reset_sessions()  # drop sessions built while online, now that HF_HUB_OFFLINE is restored
        fake.stop()


@pytest.fixture
def hub(tmp_path_factory) -> Iterator[FakeHub]:
    """A running `FakeHub` that huggingface_hub talks to; anonymous unless a call passes ``token=hub.token``."""
    with serve_fake_hub(str(tmp_path_factory.mktemp("hf_home"))) as fake:
        yield fake


@pytest.fixture
def hub_logged_in(tmp_path_factory) -> Iterator[FakeHub]:
    """Like `hub`, with ``HF_TOKEN`` set to the hub's token, so calls without an explicit token are authenticated."""
    with serve_fake_hub(str(tmp_path_factory.mktemp("hf_home")), logged_in=True) as fake:
        yield fake
