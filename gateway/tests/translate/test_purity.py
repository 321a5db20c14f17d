"""gateway/translate is pure: importing it pulls in neither Django nor an HTTP client."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_translators_import_without_django_or_http_clients():
    code = (
        "import sys\n"
        "import gateway.translate, gateway.translate.openai_chat, gateway.translate.responses, "
        "gateway.translate.anthropic\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'httpx', 'httpx2', 'ninja', 'channels'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == ""
