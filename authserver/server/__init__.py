"""The process: uvicorn, workers and the connection guard (the only package that knows uvicorn)."""
