"""Wire formats: one folder per format, each with its vocabulary once and both its sides.

    formats/
      canonical.py   the inner (OpenAI-shaped) format: typed shapes, ChunkMaker, helpers
      caller.py      CallerFormat: the caller side's interface (request in, answer out)
      upstream.py    UpstreamAdapter: the upstream side's interface, plus the relay plumbing
      registry.py    THE list: caller protocol -> CallerFormat, api_type -> adapter
      openai/        vocab.py, caller.py, upstream.py   (api_type openai and vllm)
      ollama/        vocab.py, caller.py, upstream.py
      anthropic/     vocab.py, caller.py, upstream.py

``vocab.py`` holds what the format calls things (routes, option names, finish/stop reasons as
one two-way table, tool-call and tool shapes both ways, the error shape, where usage is);
``caller.py`` turns a caller's request into canonical and canonical events into the caller's
bytes; ``upstream.py`` sends canonical (or, same format, the caller's own bytes) upstream and
reads the answer back as canonical events. The HTTP client and secret masking they use live in
``llm_router_api/http``. No Flask, metrics or load balancing in here.
"""
