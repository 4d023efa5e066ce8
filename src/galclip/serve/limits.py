"""What keeps the explorer up under hostile requests: upload checks before any allocation, and
read timeouts for slow clients.

- :func:`check_fits_upload` walks an uploaded FITS file's headers (FITS Standard 4.0, sec. 4.4.1:
  data size = |BITPIX| / 8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)) before astropy reads
  any data: a header that declares more data than the file holds is a 400, a tile-compressed
  HDU (``ZIMAGE``) that would decompress past :data:`MAX_DECOMPRESSED_BYTES` is a 413;
- :func:`parse_upload` turns whatever a reader raises on a malformed file into a 400;
- :data:`READ_TIMEOUT_S`: how long a client may take to send a request's headers and body,
  else it gets ``408`` and the connection is closed (:func:`galclip.serve.protocol.timed_protocol`);
  once a request is read, its handler may take as long as it needs. uvicorn itself has no such
  timeout: its keep-alive timer only runs while a connection is idle between requests.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
BLOCK = 2880
CARD = 80
MAX_DECOMPRESSED_BYTES = 64 * 2**20     # a 3 x 2048 x 2048 float32 cube is 48 MiB
MAX_HDUS = 64
READ_TIMEOUT_S = 30.0
MAX_UPLOAD_BYTES = 20 * 2**20            # a query file (FITS cutout or spectrum) as uploaded
DATA_CACHE_BYTES = 256 * 2**20           # decoded dataset row groups the explorer keeps
UPLOAD_THREADS = 1                       # uploads parsed and embedded at once per process


class UploadRejected(ValueError):
    """An upload refused before parsing; ``status`` is the HTTP code (400 or 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- FITS layout
def _header_end(body: bytes, pos: int, name: str) -> int:
    """Offset just past the 2880-byte block holding the END card of the header at ``pos``."""
    for block in range(pos, len(body) - BLOCK + 1, BLOCK):
        for card in range(block, block + BLOCK, CARD):
            if body[card:card + 8] == b"END     ":
                return block + BLOCK
    raise UploadRejected(f"{name}: not a readable FITS file (the header at byte {pos} has no END "
                         "card: truncated?)")


def _int_card(header, key: str, name: str, default: int | None = None) -> int:
    try:                          # astropy parses a card's value lazily, here
        value = header.get(key, default)
    except Exception as e:        # noqa: BLE001 - VerifyError and friends on a garbled card
        raise UploadRejected(f"{name}: header card {key} is unreadable ({type(e).__name__})"
                             ) from None
    if type(value) is not int or value < 0 and key not in ("BITPIX", "ZBITPIX"):
        raise UploadRejected(f"{name}: header card {key} is {value!r}, expected an integer")
    return value


def _card(header, key: str, name: str):
    try:
        return header.get(key)
    except Exception as e:        # noqa: BLE001 - as in _int_card
        raise UploadRejected(f"{name}: header card {key} is unreadable ({type(e).__name__})"
                             ) from None


def _sizes(header, name: str) -> tuple[int, int]:
    """(data bytes in the file, bytes once decompressed) declared by one header."""
    bitpix = _int_card(header, "BITPIX", name)
    naxes = [_int_card(header, f"NAXIS{i}", name) for i in
             range(1, _int_card(header, "NAXIS", name) + 1)]
    pcount, gcount = _int_card(header, "PCOUNT", name, 0), _int_card(header, "GCOUNT", name, 1)
    elements = 1
    for n in naxes:
        elements *= n
    data = abs(bitpix) // 8 * gcount * (pcount + (elements if naxes else 0))
    if _card(header, "ZIMAGE", name) is not True:
        return data, data
    zbitpix = _int_card(header, "ZBITPIX", name)
    full = abs(zbitpix) // 8
    for i in range(1, _int_card(header, "ZNAXIS", name) + 1):
        full *= _int_card(header, f"ZNAXIS{i}", name)
    return data, full


def check_fits_upload(body: bytes, name: str,
                      max_decompressed: int | None = None) -> list[tuple[int, int]]:
    """Check an uploaded FITS file's declared layout; returns (data, decompressed) bytes per HDU.

    Reads headers only, in time linear in the file size, so nothing is allocated for a size
    the file merely claims. ``max_decompressed`` defaults to :data:`MAX_DECOMPRESSED_BYTES`."""
    from astropy.io import fits

    max_decompressed = MAX_DECOMPRESSED_BYTES if max_decompressed is None else max_decompressed
    pos, out = 0, []
    while pos + BLOCK <= len(body) and (not out or body[pos:pos + 8] == b"XTENSION"):
        end = _header_end(body, pos, name)
        try:
            header = fits.Header.fromstring(body[pos:end].decode("ascii", "replace"))
        except Exception as e:    # astropy raises many types on a garbled header
            raise UploadRejected(f"{name}: HDU {len(out)}: unreadable header "
                                 f"({type(e).__name__}: {e})") from None
        data, full = _sizes(header, name)
        if end + data > len(body):
            raise UploadRejected(f"{name}: HDU {len(out)} declares {data} bytes of data but the "
                                 f"file holds {len(body) - end} after its header (truncated?)")
        if full > max(max_decompressed, data):     # only compressed HDUs can grow
            raise UploadRejected(f"{name}: HDU {len(out)} would decompress to {full} bytes, "
                                 f"limit {max_decompressed}", status=413)
        out.append((data, full))
        if len(out) > MAX_HDUS:
            raise UploadRejected(f"{name}: more than {MAX_HDUS} HDUs")
        pos = end + -(-data // BLOCK) * BLOCK
    if not out:
        raise UploadRejected(f"{name}: not a readable FITS file (shorter than one 2880-byte "
                             "block)")
    return out


def parse_upload(reader: Callable[[bytes, str], T], body: bytes, name: str) -> T:
    """Run a query-file reader on a checked upload; any error a malformed file can cause
    (a missing HDU's KeyError, astropy's many exception types) becomes a 400."""
    from astropy.io.fits.verify import VerifyError

    check_fits_upload(body, name)
    try:
        return reader(body, name)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError,
            ArithmeticError, EOFError, VerifyError) as e:
        if isinstance(e, UploadRejected):
            raise
        detail = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise UploadRejected(f"{name}: cannot use this file ({type(e).__name__}: "
                             f"{detail})") from None
