"""The native libraries the decoders prefer, each ``None`` when it does not import.

All three are dependencies of the package, but a platform may lack a wheel (or have a broken one), and then the
decoders fall back to what imports. Every decoder reads them from here at call time (``optional.pyspng``),
so a test takes a library away by setting it to ``None`` here.
"""
try:
    import pyspng
except ImportError:  # no wheel for this platform, or a broken one: PIL decodes everything
    pyspng = None

try:
    import deflate as libdeflate  # libdeflate: inflates about twice as fast as zlib, and its CRC-32 is faster still
except ImportError:
    libdeflate = None

try:
    import simplejpeg  # libjpeg-turbo, bundled in its wheels: pixel-exact with PIL's JPEG decode, and faster
except ImportError:  # PIL decodes JPEGs
    simplejpeg = None

__all__ = ["libdeflate", "pyspng", "simplejpeg"]
