"""OpenAI's wire format (also vLLM's): caller side, upstream side, vocabulary."""
