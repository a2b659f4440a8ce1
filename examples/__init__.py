"""Small APIs protected by latchkey access tokens: FastAPI, Starlette and Flask."""
