# Makes the repository root importable for tests (the `standin` package lives here).
