"""The io room: an object's bytes as a stream. Byte ranges and their rules (:mod:`.ranges`), streams read in
chunks and resumed at the byte reached (:mod:`.streams`), ranged parts several in flight into bounded buffers
(:mod:`.ranged`, :mod:`.parts`, :mod:`.daemon_pool`), and opening the next shard ahead (:mod:`.prefetch`).
It asks the client room for retries and errors; it makes no client and knows no backend."""
