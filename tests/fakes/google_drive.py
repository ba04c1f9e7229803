"""A local server speaking the Google Drive v3 and OAuth token protocols, for the sync tests.

The token endpoint verifies the service account's JWT (RS256, with the test key's public half;
issuer, audience, scope, expiry) before it gives an access token; `files.list` pages by
`pageToken` and honours `'<folder>' in parents`; Google Docs export as HTML, other files come
with `alt=media`.

    with FakeDrive(public_key) as drive:
        drive.add("folder1", "d1", "Tunnel de vente", GOOGLE_DOC, content=b"<h1>...</h1>")
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes._threaded import ThreadedServer

GOOGLE_DOC = "application/vnd.google-apps.document"
FOLDER = "application/vnd.google-apps.folder"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SCOPE = "https://www.googleapis.com/auth/drive.readonly"


def service_account_key(token_uri: str, email: str = "sync@copines-test.iam.gserviceaccount.com"):
    """(key file dict, private key): a fresh RSA key in the service-account JSON format."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "project_id": "copines-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "token_uri": token_uri,
    }
    return key, private


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class FakeDrive(ThreadedServer):
    public_key: Any = None
    email: str = "sync@copines-test.iam.gserviceaccount.com"
    name: str = "fake-drive"
    page_size_cap: int = 2  # files.list answers at most this many per page: paging is exercised
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)  # why the token endpoint said no
    broken: set[str] = field(default_factory=set)  # file ids whose download answers 500
    list_status: int = 200
    unshared: set[str] = field(default_factory=set)  # ids the service account cannot see

    def add(
        self,
        parent: str,
        file_id: str,
        name: str,
        mime: str,
        content: bytes = b"",
        modified: str = "2026-01-01T10:00:00.000Z",
    ) -> None:
        self.files[file_id] = {
            "id": file_id,
            "name": name,
            "mimeType": mime,
            "modifiedTime": modified,
            "parents": [parent],
            "webViewLink": f"https://docs.example.test/{file_id}/view",
            "trashed": False,
        }
        self.contents[file_id] = content

    def change(self, file_id: str, content: bytes, modified: str) -> None:
        self.contents[file_id] = content
        self.files[file_id]["modifiedTime"] = modified

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self.token)
        app.router.add_get("/drive/v3/files", self.list_files)
        app.router.add_get("/drive/v3/files/{id}/export", self.export)
        app.router.add_get("/drive/v3/files/{id}", self.media)

    async def token(self, request: web.Request) -> web.Response:
        form = parse_qs((await request.read()).decode())
        why = self._check_assertion(form)
        if why:
            self.refused.append(why)
            return web.json_response(
                {"error": "invalid_grant", "error_description": why}, status=400
            )
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    def _check_assertion(self, form: dict[str, list[str]]) -> str:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return "wrong grant_type"
        try:
            header, claims, signature = form["assertion"][0].split(".")
            self.public_key.verify(
                _unb64(signature),
                f"{header}.{claims}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            head = json.loads(_unb64(header))
            body = json.loads(_unb64(claims))
        except (KeyError, ValueError, InvalidSignature):
            return "invalid JWT signature"
        now = time.time()
        if head.get("alg") != "RS256":
            return "not RS256"
        if body.get("iss") != self.email:
            return "unknown issuer"
        if body.get("aud") != f"{self.url}/token":
            return "wrong audience"
        if body.get("scope") != SCOPE:
            return "wrong scope"
        if not (body.get("iat", 0) - 60 <= now < body.get("exp", 0)):
            return "expired"
        return ""

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    async def list_files(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        if self.list_status != 200:
            return web.json_response({"error": {"code": self.list_status}}, status=self.list_status)
        q = request.query.get("q", "")
        parent = q.split("'")[1] if q.count("'") >= 2 else ""
        # An unknown or unshared folder lists as empty, as on Drive: no error.
        listed = sorted(
            (
                f
                for f in self.files.values()
                if parent in f["parents"] and parent not in self.unshared and not f["trashed"]
            ),
            key=lambda f: f["name"],
        )
        size = min(int(request.query.get("pageSize", "100")), self.page_size_cap)
        start = int(request.query.get("pageToken") or 0)
        fields = ("id", "name", "mimeType", "modifiedTime", "webViewLink")
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "files": [{k: f[k] for k in fields} for f in listed[start : start + size]],
        }
        if start + size < len(listed):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)

    async def export(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        file = self.files.get(request.match_info["id"])
        if file is None or file["mimeType"] != GOOGLE_DOC:
            return web.json_response({"error": {"code": 404}}, status=404)
        if request.query.get("mimeType") != "text/html":
            return web.json_response({"error": {"code": 400}}, status=400)
        return web.Response(body=self.contents[file["id"]], content_type="text/html")

    async def media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        file = self.files.get(request.match_info["id"])
        if file is None or file["id"] in self.unshared:
            # What Drive answers for a file that does not exist and one not shared alike.
            message = f"File not found: {request.match_info['id']}."
            return web.json_response({"error": {"code": 404, "message": message}}, status=404)
        if request.query.get("alt") != "media":  # files.get: the metadata, as `fields` asks
            wanted = request.query.get("fields", "id,name,mimeType").split(",")
            return web.json_response({k.strip(): file[k.strip()] for k in wanted})
        if file["id"] in self.broken:
            return web.json_response({"error": {"code": 500}}, status=500)
        if file["mimeType"].startswith("application/vnd.google-apps"):
            return web.json_response({"error": {"code": 403}}, status=403)
        return web.Response(body=self.contents[file["id"]], content_type=file["mimeType"])
