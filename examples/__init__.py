"""Small APIs protected by latchkey access tokens: FastAPI, Starlette, Flask and Django."""
