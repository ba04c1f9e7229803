"""Google Drive: a folder read with a service account (Drive API v3).

Auth is the OAuth 2.0 service-account flow: a JWT signed with the account's private key
(RS256) exchanged at the token endpoint for an access token. Files are listed with `files.list`
(paged by `pageToken`), Google Docs exported as HTML (`files.export`), PDF, docx, Markdown and
text files downloaded (`alt=media`). Subfolders are read too.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from copines.config import Settings
from copines.errors import ConfigError
from copines.knowledge.sources.http import Fetcher, FetchError, http_problem

SCOPE = "https://www.googleapis.com/auth/drive.readonly"
FOLDER = "application/vnd.google-apps.folder"
GOOGLE_DOC = "application/vnd.google-apps.document"
# What each readable type becomes: (how to fetch it, the loader's file suffix).
READABLE = {
    GOOGLE_DOC: ("export", ".html"),
    "application/pdf": ("media", ".pdf"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("media", ".docx"),
    "text/markdown": ("media", ".md"),
    "text/x-markdown": ("media", ".md"),
    "text/plain": ("media", ".txt"),
    "text/html": ("media", ".html"),
}
FIELDS = "nextPageToken, files(id, name, mimeType, modifiedTime, webViewLink, md5Checksum)"
MAX_DEPTH = 5
# Drive ids go inside the files.list query ("'<id>' in parents"): nothing else may.
DRIVE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    modified_time: str
    url: str | None
    path: str  # folders above it, inside the synced folder: "Guides/Tunnels"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_jwt(key: dict, audience: str, now: int | None = None) -> str:
    """The assertion of the service-account flow, signed RS256 with the account's key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    now = int(time.time()) if now is None else now
    header = {"alg": "RS256", "typ": "JWT"}
    if key.get("private_key_id"):
        header["kid"] = key["private_key_id"]
    claims = {
        "iss": key["client_email"],
        "scope": SCOPE,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    signature = private.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def read_key(path: Path | None) -> dict:
    """The service account's JSON key. Raises ConfigError naming the setting."""
    if path is None:
        raise ConfigError(
            "no Google service account: set COPINES_GOOGLE_SERVICE_ACCOUNT_FILE to its JSON "
            "key file (see docs/knowledge.md)"
        )
    try:
        key = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the service account key {path}: {exc}") from exc
    missing = [f for f in ("client_email", "private_key") if not key.get(f)]
    if missing:
        raise ConfigError(f"the service account key {path} lacks {', '.join(missing)}")
    return key


class DriveClient:
    """The few Drive v3 calls a sync needs, through `fetcher` (base URLs from settings)."""

    def __init__(self, settings: Settings, fetcher: Fetcher):
        self.settings = settings
        self.fetcher = fetcher
        self.base = settings.drive_api_url.rstrip("/")
        self._key: dict | None = None
        self._token: tuple[str, float] | None = None

    async def _access_token(self) -> str:
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        if self._key is None:
            self._key = read_key(self.settings.google_service_account_file)
        audience = self.settings.google_token_url or self._key.get(
            "token_uri", "https://oauth2.googleapis.com/token"
        )
        fetched = await self.fetcher.request(
            "POST",
            audience,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": signed_jwt(self._key, audience),
            },
        )
        if fetched.status != 200:
            detail = fetched.content[:200].decode("utf-8", errors="replace")
            raise FetchError(
                f"Drive: the token endpoint refused the service account: "
                f"{http_problem(fetched)} {detail}"
            )
        answer = fetched.json()
        lifetime = float(answer.get("expires_in", 3600))
        self._token = (answer["access_token"], time.monotonic() + max(60.0, lifetime - 60))
        return self._token[0]

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        token = await self._access_token()
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        fetched = await self.fetcher.get(url, headers={"Authorization": f"Bearer {token}"})
        if fetched.status != 200:
            raise FetchError(f"Drive: {http_problem(fetched)}")
        return fetched.content

    async def list_folder(self, folder_id: str) -> list[DriveFile]:
        """Every file under the folder (subfolders included), all pages read.

        Raises:
            FetchError: any page of the listing failed (the listing is then incomplete).
        """
        if not DRIVE_ID.fullmatch(folder_id):
            raise ConfigError(
                f"'{folder_id}' is not a Drive folder id: take the last part of the folder's "
                "address (letters, digits, - and _)"
            )
        await self._check_folder(folder_id)
        files: list[DriveFile] = []
        folders = [(folder_id, "", 0)]
        while folders:
            current, path, depth = folders.pop(0)
            token = ""
            while True:
                params = {
                    "q": f"'{current}' in parents and trashed = false",
                    "fields": FIELDS,
                    "pageSize": "100",
                    "supportsAllDrives": "true",
                    "includeItemsFromAllDrives": "true",
                    "orderBy": "name",
                }
                if token:
                    params["pageToken"] = token
                page = json.loads(await self._get("/drive/v3/files", params))
                for entry in page.get("files", []):
                    if entry.get("mimeType") == FOLDER:
                        if depth < MAX_DEPTH:
                            sub = f"{path}/{entry['name']}".lstrip("/")
                            folders.append((entry["id"], sub, depth + 1))
                        continue
                    files.append(
                        DriveFile(
                            id=entry["id"],
                            name=entry.get("name", entry["id"]),
                            mime_type=entry.get("mimeType", ""),
                            modified_time=entry.get("modifiedTime", ""),
                            url=entry.get("webViewLink"),
                            path=path,
                        )
                    )
                token = page.get("nextPageToken") or ""
                if not token:
                    break
        return files

    async def _check_folder(self, folder_id: str) -> None:
        """Raises FetchError unless the id is a folder the service account sees, not in the
        trash: files.list answers an empty 200 for a folder it cannot see, which would look
        like a folder emptied."""
        token = await self._access_token()
        url = (
            f"{self.base}/drive/v3/files/{quote(folder_id, safe='')}"
            "?supportsAllDrives=true&fields=id%2CmimeType%2Ctrashed"
        )
        fetched = await self.fetcher.get(url, headers={"Authorization": f"Bearer {token}"})
        if fetched.status in (403, 404):
            email = (self._key or {}).get("client_email", "the service account")
            raise FetchError(
                f"Drive: the folder {folder_id} is not found or not shared with {email} "
                f"({http_problem(fetched)}); share it with that address, or fix the id"
            )
        if fetched.status != 200:
            raise FetchError(f"Drive: {http_problem(fetched)}")
        meta = fetched.json()
        if meta.get("trashed"):
            raise FetchError(f"Drive: the folder {folder_id} is in the trash")
        if meta.get("mimeType") != FOLDER:
            kind = meta.get("mimeType") or "unknown type"
            raise FetchError(f"Drive: {folder_id} is not a folder ({kind})")

    async def content(self, file: DriveFile) -> tuple[bytes, str]:
        """The file's bytes and the loader suffix they read with."""
        how, suffix = READABLE[file.mime_type]
        if how == "export":
            data = await self._get(
                f"/drive/v3/files/{quote(file.id)}/export", {"mimeType": "text/html"}
            )
        else:
            data = await self._get(
                f"/drive/v3/files/{quote(file.id)}", {"alt": "media", "supportsAllDrives": "true"}
            )
        return data, suffix
