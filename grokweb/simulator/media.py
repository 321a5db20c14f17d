"""Real, small media bytes made without external tools (docs/upstream-protocol.md §15.9, §15.10).

- PNG: RGB, 8 bit, zlib-compressed scanlines (filter 0).
- JPEG: baseline, 4:4:4 YCbCr, one flat colour per 8×8 block (DC coefficients only, every AC block
  ends with EOB) — a valid JFIF that every standard decoder reads; the picture is a blocky pattern.
- MP4: ISO BMFF ``ftyp`` + ``mdat`` + ``moov`` with one video track whose samples are JPEG frames
  (``jpeg`` sample entry, i.e. Motion-JPEG in MP4), so the box structure and the samples are real.
- FLAC: ``fLaC`` + STREAMINFO + frames of CONSTANT (silent) mono 16-bit subframes with CRC-8/CRC-16.

Everything is deterministic in its ``seed`` argument and cached.
"""
from __future__ import annotations

import functools
import hashlib
import struct
import zlib


def _palette(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    h = hashlib.sha256(seed.encode()).digest()
    return (h[0], h[1], h[2]), (255 - h[3] // 2, h[4], 255 - h[5])


def _pixel(x: int, y: int, w: int, h: int, c1, c2) -> tuple[int, int, int]:
    t = ((x / max(1, w - 1)) + (y / max(1, h - 1))) / 2
    band = ((x // 8 + y // 8) % 4 == 0)
    r, g, b = (int(c1[i] * (1 - t) + c2[i] * t) for i in range(3))
    if band:
        r, g, b = 255 - r, 255 - g, 255 - b
    return r, g, b


# ---------------------------------------------------------------- PNG

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=256)
def png_bytes(seed: str = "sim", width: int = 64, height: int = 64) -> bytes:
    c1, c2 = _palette(seed)
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows.extend(_pixel(x, y, width, height, c1, c2))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + _png_chunk(b"IEND", b""))


# ---------------------------------------------------------------- JPEG

# Standard DC tables (ITU T.81 Annex K.3); the AC tables hold only EOB (symbol 0x00, code "0").
_DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
_DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
_AC_EOB = ([1] + [0] * 15, [0])


def _huff_codes(bits: list[int], vals: list[int]) -> dict[int, tuple[int, int]]:
    codes: dict[int, tuple[int, int]] = {}
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self) -> bytes:
        while self.n:
            self.write(1, 1)
        return bytes(self.out)


def _dht(cls_id: int, table) -> bytes:
    bits, vals = table
    payload = bytes([cls_id]) + bytes(bits) + bytes(vals)
    return b"\xff\xc4" + struct.pack(">H", len(payload) + 2) + payload


@functools.lru_cache(maxsize=512)
def jpeg_bytes(seed: str = "sim", width: int = 64, height: int = 64) -> bytes:
    c1, c2 = _palette(seed)
    dc_codes = [_huff_codes(*_DC_LUMA), _huff_codes(*_DC_CHROMA), _huff_codes(*_DC_CHROMA)]
    ac_codes = [_huff_codes(*_AC_EOB)] * 3
    bw = _BitWriter()
    prev = [0, 0, 0]
    for by in range((height + 7) // 8):
        for bx in range((width + 7) // 8):
            r, g, b = _pixel(bx * 8 + 4, by * 8 + 4, width, height, c1, c2)
            ycc = (0.299 * r + 0.587 * g + 0.114 * b,
                   128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                   128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
            for comp in range(3):
                dc = int(round(ycc[comp] - 128))  # quant[0] = 8, flat-block DC = 8·(v-128)
                diff = dc - prev[comp]
                prev[comp] = dc
                size = abs(diff).bit_length()
                code, length = dc_codes[comp][size]
                bw.write(code, length)
                if size:
                    bw.write(diff if diff > 0 else diff + (1 << size) - 1, size)
                code, length = ac_codes[comp][0]
                bw.write(code, length)
    scan = bw.flush()
    quant = bytes([8] + [1] * 63)
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\x00", 1, 1, 0, 1, 1, 0, 0)
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + quant
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    out += bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    out += _dht(0x00, _DC_LUMA) + _dht(0x01, _DC_CHROMA) + _dht(0x10, _AC_EOB) + _dht(0x11, _AC_EOB)
    out += b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    out += scan + b"\xff\xd9"
    return bytes(out)


# ---------------------------------------------------------------- MP4 (Motion-JPEG)

def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", len(body) + 8) + kind + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@functools.lru_cache(maxsize=64)
def mp4_bytes(seed: str = "sim", frames: int = 6, width: int = 64, height: int = 64, fps: int = 6) -> bytes:
    samples = [jpeg_bytes(f"{seed}/{i}", width, height) for i in range(frames)]
    timescale = fps * 100
    delta = 100
    duration = frames * delta
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2mp41")
    mdat = _box(b"mdat", *samples)
    chunk_offset = len(ftyp) + 8
    ms = duration * 1000 // timescale
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, ms), struct.pack(">IH", 0x10000, 0x100),
                 b"\x00" * 10, _MATRIX, b"\x00" * 24, struct.pack(">I", 2))
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, ms), b"\x00" * 8,
                 struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, duration), struct.pack(">HH", 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", b"\x00" * 12, b"VideoHandler\x00")
    vmhd = _full(b"vmhd", 0, 1, b"\x00" * 8)
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    name = b"Photo - JPEG"
    entry = _box(b"jpeg", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 16, struct.pack(">HH", width, height),
                 struct.pack(">II", 0x480000, 0x480000), b"\x00" * 4, struct.pack(">H", 1),
                 bytes([len(name)]) + name + b"\x00" * (31 - len(name)), struct.pack(">Hh", 0x18, -1))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, frames, delta)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
        _full(b"stsz", 0, 0, struct.pack(">II", 0, frames), b"".join(struct.pack(">I", len(s)) for s in samples)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
    )
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", vmhd, dinf, stbl)))
    moov = _box(b"moov", mvhd, trak)
    return ftyp + mdat + moov


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """Top-level (or nested, with start/end) boxes as (type, offset, size); raises ValueError if invalid."""
    end = len(data) if end is None else end
    boxes, pos = [], start
    while pos < end:
        if pos + 8 > end:
            raise ValueError("truncated box header")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size < 8 or pos + size > end:
            raise ValueError(f"bad box size at {pos}")
        boxes.append((kind, pos, size))
        pos += size
    return boxes


# ---------------------------------------------------------------- FLAC

def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@functools.lru_cache(maxsize=8)
def flac_bytes(frames: int = 11) -> bytes:
    block, rate = 4096, 44100
    out_frames = []
    for n in range(frames):
        header = bytes([0xFF, 0xF8, 0xC9, 0x08, n])  # 4096 samples, 44.1 kHz, mono, 16 bit, frame n
        header += bytes([_crc8(header)])
        frame = header + b"\x00" + b"\x00\x00"  # CONSTANT subframe, value 0
        out_frames.append(frame + struct.pack(">H", _crc16(frame)))
    fsize = len(out_frames[0])
    total = frames * block
    info = struct.pack(">HH", block, block) + fsize.to_bytes(3, "big") * 2
    packed = (rate << 44) | (0 << 41) | (15 << 36) | total
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + b"".join(out_frames)


# ---------------------------------------------------------------- sniffing

def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(mime, width, height) for PNG, JPEG, GIF and WebP bytes; None when not an image we know."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "image/png", w, h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return "image/gif", w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return "image/webp", w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            b = data[21:25]
            w = 1 + (((b[1] & 0x3F) << 8) | b[0])
            h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
            return "image/webp", w, h
        if kind == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return "image/webp", w, h
        return "image/webp", 0, 0
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return "image/jpeg", 0, 0
            marker = data[pos + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
                return "image/jpeg", w, h
            pos += 2 + length
        return "image/jpeg", 0, 0
    return None
