"""Small asyncio servers on 127.0.0.1 for the transport tests: scripted per connection, so a test
says byte for byte what the "upstream" sends and when."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@contextlib.asynccontextmanager
async def serve(handle, ssl_ctx: ssl.SSLContext | None = None):
    """Run `handle(reader, writer)` per accepted connection; yields (port, accepted writers)."""
    accepted: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task] = set()

    async def on_connection(reader, writer):
        accepted.append(writer)
        tasks.add(asyncio.current_task())
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=ssl_ctx)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def never_answer(reader, writer):
    await reader.read()  # until the client gives up and closes


async def eventually(condition, what: str) -> None:
    for _ in range(500):  # a bound for a hung test, not a speed check
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never happened: {what}")


def self_signed_tls(tmp_path):
    """A self-signed certificate for 127.0.0.1 (IP SAN): (its PEM path, a server context using it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certfile, keyfile)
    return str(certfile), server_ctx


def h2_server(headers: list[tuple[str, str]], body: bytes):
    """A connection handler that speaks HTTP/2 (server side of the `h2` library) and answers every
    request with `headers` (after :status 200) and `body`. Serve it over TLS offering ALPN "h2"."""
    import h2.config
    import h2.connection
    import h2.events

    async def handle(reader, writer):
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [(":status", "200"), *headers])
                    conn.send_data(event.stream_id, body, end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()

    return handle
