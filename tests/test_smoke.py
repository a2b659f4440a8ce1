"""The README flow through the ASGI app, in a few lines."""

import httpx


async def test_login_me_refresh_logout(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """A user logs in, calls /auth/me, refreshes and logs out."""
    response = await client.post("/auth/login", json=alice)
    assert response.status_code == 200
    pair = response.json()
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.json()["username"] == "alice"
    rotated = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != pair["refresh_token"]
    out = await client.post("/auth/logout", json={"refresh_token": rotated.json()["refresh_token"]})
    assert out.status_code == 204
    again = await client.post(
        "/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert again.status_code == 401
