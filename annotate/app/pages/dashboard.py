"""Dashboard (filled in below)."""

import streamlit as st


def page() -> None:
    st.title("Dashboard")
