"""The app's pages (Streamlit); each module has a `page()` function that `app.py` navigates to."""
