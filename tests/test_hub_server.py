"""The real huggingface_hub client against tests/hub_server.FakeHub: uploads, downloads, revisions, errors, auth."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests import hub_server
from tests.hub_server import FakeHub, git_blob_sha


# Fixtures bound by assignment, not `from ... import hub`: test parameters named `hub` would trip ruff's F811.
hub = hub_server.hub
hub_logged_in = hub_server.hub_logged_in


REPO = "test-user/adapter"
ENDPOINT_BEFORE = constants.ENDPOINT
OFFLINE_BEFORE = (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _read_tree(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture
def first_files() -> dict[str, bytes]:
    return {
        "adapter_config.json": b'{"r": 8}\n',
        "README.md": b"# adapter\n",
        "weights/adapter_model.bin": os.urandom(500 * 1024),
    }


def test_fixture_points_huggingface_hub_at_the_fake(hub, tmp_path):
    from huggingface_hub import file_download, hf_api

    assert constants.ENDPOINT == hub.url
    assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(hub.url + "/")
    assert file_download.HUGGINGFACE_CO_URL_TEMPLATE.startswith(hub.url + "/")
    assert hf_api.api.endpoint == hub.url
    assert constants.HF_HUB_OFFLINE is False
    assert constants.HF_HUB_DISABLE_XET is True
    assert os.environ["HF_ENDPOINT"] == hub.url
    assert not constants.HF_HUB_CACHE.startswith(os.path.expanduser("~"))


def test_upload_folder_then_snapshot_download_round_trips(hub, api, tmp_path, first_files):
    url = api.create_repo(REPO, private=False, exist_ok=True)
    assert url.repo_id == REPO
    api.create_repo(REPO, exist_ok=True)  # 409 swallowed
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO)
    assert exc.value.response.status_code == 409

    info = api.upload_folder(folder_path=_folder(tmp_path / "src", first_files), repo_id=REPO, commit_message="v1")
    assert hub.files(REPO) == first_files
    assert hub.commits(REPO)[-1] == info.oid
    assert ("POST", f"/api/models/{REPO}/preupload/main") in hub.requests
    assert ("POST", f"/api/models/{REPO}/commit/main") in hub.requests

    local = snapshot_download(REPO, token=hub.token)  # module-level function: the default HfApi and cache
    assert _read_tree(local) == first_files
    assert Path(local).parent.name == "snapshots" and Path(local).name == info.oid

    model = api.model_info(REPO)
    assert model.sha == info.oid and model.private is False and model.id == REPO
    assert sorted(s.rfilename for s in model.siblings) == sorted(first_files)
    assert api.repo_exists(REPO) and not api.repo_exists("test-user/nope")
    assert api.list_repo_files(REPO) == sorted(first_files)


def test_second_commit_keeps_first_revision_readable(hub, api, tmp_path, first_files):
    api.create_repo(REPO)
    first = api.upload_folder(folder_path=_folder(tmp_path / "v1", first_files), repo_id=REPO).oid
    second = api.upload_file(
        path_or_fileobj=b'{"r": 16}\n', path_in_repo="adapter_config.json", repo_id=REPO, commit_message="v2"
    ).oid
    assert second != first
    assert hub.commits(REPO)[-2:] == [first, second]

    new_path = hf_hub_download(REPO, "adapter_config.json", token=hub.token)
    old_path = hf_hub_download(REPO, "adapter_config.json", revision=first, token=hub.token)
    assert Path(new_path).read_bytes() == b'{"r": 16}\n'
    assert Path(old_path).read_bytes() == b'{"r": 8}\n'
    assert _read_tree(snapshot_download(REPO, revision=first, cache_dir=tmp_path / "c1")) == first_files
    assert api.model_info(REPO, revision=first).sha == first
    assert hub.files(REPO, revision=first) == first_files

    # A deletion plus a branch: main moves on, the branch keeps its own head.
    api.create_branch(REPO, branch="dev")
    api.delete_file("README.md", repo_id=REPO)
    assert "README.md" not in hub.files(REPO)
    assert hub.files(REPO, revision="dev")["README.md"] == b"# adapter\n"
    third = api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=REPO, revision="dev").oid
    assert hub.files(REPO, revision="dev")["dev.txt"] == b"dev only"
    assert "dev.txt" not in hub.files(REPO)
    assert (
        Path(hf_hub_download(REPO, "dev.txt", revision="dev", cache_dir=tmp_path / "c2")).read_bytes() == b"dev only"
    )
    assert {ref.name: ref.target_commit for ref in api.list_repo_refs(REPO).branches}["dev"] == third
    assert [c.commit_id for c in api.list_repo_commits(REPO)][::-1] == hub.commits(REPO)


def test_unchanged_files_are_not_recommitted(hub, api, tmp_path, first_files):
    api.create_repo(REPO)
    folder = _folder(tmp_path / "src", first_files)
    first = api.upload_folder(folder_path=folder, repo_id=REPO).oid
    again = api.upload_folder(folder_path=folder, repo_id=REPO).oid
    assert again == first and hub.commits(REPO)[-1] == first


def test_private_repo_is_hidden_without_token(hub, api, tmp_path):
    api.create_repo("test-user/secret", private=True)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="test-user/secret")
    assert hub.is_private("test-user/secret")
    anonymous = HfApi(endpoint=hub.url, token=False)
    assert not anonymous.repo_exists("test-user/secret")
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("test-user/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-user/secret", "a.txt", token=False, cache_dir=tmp_path / "anon")
    assert api.model_info("test-user/secret").private is True
    path = hf_hub_download("test-user/secret", "a.txt", token=hub.token, cache_dir=tmp_path / "auth")
    assert Path(path).read_bytes() == b"x"


def test_missing_repo_revision_and_file(hub, api, tmp_path):
    hub.add_repo("test-user/present", {"a.txt": b"a"})
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("test-user/absent")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-user/absent", "a.txt", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.model_info("test-user/present", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("test-user/present", revision="0" * 40, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("test-user/present", "a.txt", revision="nope", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("test-user/present", "missing.txt", cache_dir=tmp_path)
    assert api.file_exists("test-user/present", "a.txt") and not api.file_exists("test-user/present", "b.txt")


def test_writes_need_the_token(hub, tmp_path):
    hub.add_repo(REPO, {"a.txt": b"a"})
    head = hub.commits(REPO)[-1]
    for token in (False, "hf_wrong"):
        client = HfApi(endpoint=hub.url, token=token)
        with pytest.raises(HfHubHTTPError) as exc:
            client.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id=REPO)
        assert exc.value.response.status_code == 401
        with pytest.raises(HfHubHTTPError) as exc:
            client.create_repo("test-user/other")
        assert exc.value.response.status_code == 401
    assert hub.commits(REPO)[-1] == head and hub.files(REPO) == {"a.txt": b"a"}
    assert hub.repo_ids() == [REPO]


def test_malformed_commit_leaves_head_unchanged(hub):
    hub.add_repo(REPO, {"a.txt": b"a"})
    head = hub.commits(REPO)[-1]
    url = f"{hub.url}/api/models/{REPO}/commit/main"
    headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"}
    good = b'{"key": "header", "value": {"summary": "s", "description": ""}}\n'
    good += b'{"key": "file", "value": {"path": "b.txt", "content": "Yg==", "encoding": "base64"}}\n'
    for body in (good + b"{not json\n", good + b'{"key": "file", "value": {"path": "c", "content": "!!"}}\n'):
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 400
    deleting_missing = good + b'{"key": "deletedFile", "value": {"path": "nope.txt"}}\n'
    response = requests.post(url, data=deleting_missing, headers=headers, timeout=10)
    assert response.status_code == 404 and response.headers["X-Error-Code"] == "EntryNotFound"
    assert hub.commits(REPO)[-1] == head and hub.files(REPO) == {"a.txt": b"a"}
    assert requests.post(url, data=good, headers=headers, timeout=10).json()["commitOid"] == hub.commits(REPO)[-1]
    assert hub.files(REPO) == {"a.txt": b"a", "b.txt": b"b"}


def test_resolve_headers_and_ranges(hub):
    data = bytes(range(256)) * 10
    sha = hub.add_repo(REPO, {"dir/blob.bin": data})
    url = f"{hub.url}/{REPO}/resolve/main/dir/blob.bin"
    head = requests.head(url, timeout=10)
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] == f'"{git_blob_sha(data)}"'
    assert int(head.headers["Content-Length"]) == len(data)
    part = requests.get(url, headers={"Range": "bytes=100-"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:]
    missing = requests.head(f"{hub.url}/{REPO}/resolve/main/nope", timeout=10)
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == sha


def test_dataset_repos_tree_and_delete(hub, api, tmp_path):
    api.create_repo("org/data", repo_type="dataset")
    files = {"train.csv": b"a,b\n1,2\n", "sub/extra.txt": b"x"}
    api.upload_folder(folder_path=_folder(tmp_path / "d", files), repo_id="org/data", repo_type="dataset")
    assert hub.files("org/data", repo_type="dataset") == files
    local = snapshot_download("org/data", repo_type="dataset", cache_dir=tmp_path / "c", allow_patterns=["sub/*"])
    assert _read_tree(local) == {"sub/extra.txt": b"x"}
    assert [e.path for e in api.list_repo_tree("org/data", repo_type="dataset")] == ["sub", "train.csv"]
    api.delete_folder("sub", repo_id="org/data", repo_type="dataset")
    assert hub.files("org/data", repo_type="dataset") == {"train.csv": b"a,b\n1,2\n"}
    api.delete_repo("org/data", repo_type="dataset")
    assert hub.repo_ids("dataset") == [] and hub.unhandled == []


def test_context_manager_and_stop():
    with FakeHub() as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        fake.add_repo("a/b", {"x": b"1"})
        assert requests.get(f"{fake.url}/api/models/a/b", timeout=10).json()["siblings"] == [{"rfilename": "x"}]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{fake.url}/api/models/a/b", timeout=2)


def test_logged_in_fixture_authenticates_implicitly(hub_logged_in, tmp_path):
    HfApi().create_repo("test-user/implicit", private=True)
    HfApi().upload_file(path_or_fileobj=b"1", path_in_repo="x", repo_id="test-user/implicit")
    assert Path(hf_hub_download("test-user/implicit", "x")).read_bytes() == b"1"
    assert hub_logged_in.files("test-user/implicit") == {"x": b"1"}


def test_fixture_is_undone_afterwards():
    # Runs after the tests above (file order): the fixture must have restored what it patched.
    from huggingface_hub import hf_api

    assert constants.ENDPOINT == ENDPOINT_BEFORE == hf_api.api.endpoint
    assert (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")) == OFFLINE_BEFORE
