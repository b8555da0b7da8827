"""Streamlit glue shared by the pages: the cached store/project/board, and who is logged in.

Identity: a person is known only after `authenticate` accepted their password in this session (the
login form stores the login then); in open mode the project names the one local user. Nothing else
in session state can make someone a user.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import streamlit as st
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.project import Project, User, authenticate, load_project
from prefkit.annotate.app.queue import QueueError
from prefkit.annotate.app.throttle import LoginGuard
from prefkit.annotate.store import StoreError, default_store_path


def store_path() -> str:
    return os.environ.get("PREFKIT_STORE") or default_store_path()


def project_path() -> str | None:
    return os.environ.get("PREFKIT_PROJECT") or None


def queue_url() -> str | None:
    """The PostgreSQL task queue ($PREFKIT_QUEUE, set by `prefkit app --queue`); None: the store's SQLite."""
    return os.environ.get("PREFKIT_QUEUE") or None


def runs_root() -> str:
    """The folder the Training run page may read runs from ($PREFKIT_RUNS, set by `prefkit app --runs`)."""
    return os.environ.get("PREFKIT_RUNS") or "runs"


@st.cache_resource(show_spinner=False)
def _project(path: str | None) -> Project:
    return load_project(path)


@st.cache_resource(show_spinner="Loading the store…")
def _board(store: str, path: str | None, queue: str | None) -> Board:
    return Board(store, _project(path), queue)


@st.cache_resource(show_spinner=False)
def _login_guard() -> LoginGuard:
    return LoginGuard.default()  # one per server process, shared by every browser session


def project() -> Project:
    return _project(project_path())


def board() -> Board:
    try:
        return _board(store_path(), project_path(), queue_url())
    except StoreError as exc:  # e.g. a mistyped $PREFKIT_STORE: say so, never serve an empty store
        st.error(f"Cannot open the store. {exc}")
        st.stop()
    except QueueError as exc:  # the queue's server went away after `prefkit app` checked it
        st.error(f"Cannot reach the task queue. {exc}")
        st.stop()


def reload_board() -> None:
    """Drop the cached index and texts (after an import, say); the next page load rebuilds them."""
    _board.clear()


def current_user() -> User | None:
    proj = project()
    if proj.open_mode:
        return User(proj.open_user, "admin")
    login = st.session_state.get("_authenticated_login")
    return proj.user(login) if login else None


def page_user(allowed: Callable[[User], bool], refusal: str) -> User:
    """The logged-in user when `allowed(user)`; else the page shows `refusal` and stops. app.py shows
    each page only to the roles it is for; each page checks again, since a URL can name any page."""
    user = current_user()
    if user is None or not allowed(user):
        st.error(refusal)
        st.stop()
    return user


def client_address() -> str:
    """Who is logging in, for the back-off: the connection's peer address. A peer on this machine
    (Streamlit reports None) is either a local user or a reverse proxy here; then the address the
    proxy puts last in X-Forwarded-For is used, when there is one."""
    ip = st.context.ip_address
    if ip:
        return ip
    forwarded = st.context.headers.get_all("X-Forwarded-For")
    last = forwarded[-1].split(",")[-1].strip() if forwarded else ""
    return last or "this machine"


def login_page() -> None:
    proj = project()
    st.title("prefkit · log in")
    st.caption(f"Project **{proj.name}**")
    with st.form("login"):
        login = st.text_input("Login", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        sent = st.form_submit_button("Log in", type="primary")
    if sent:
        guard, login, address = _login_guard(), login.strip(), client_address()
        wait = guard.wait(login, address)
        if wait > 0:  # not even checked, so waiting is the only way on
            st.error(f"Too many failed logins. Try again in {math.ceil(wait)} s.")
            return
        user = authenticate(proj, login, password)
        if user is None:
            guard.failed(login, address)
            st.error("Wrong login or password.")
        else:
            guard.succeeded(login)
            st.session_state["_authenticated_login"] = user.login
            st.rerun()


def logout_button(user: User) -> None:
    with st.sidebar:
        st.caption(f"Logged in as **{user.login}** ({user.role})")
        if not project().open_mode and st.button("Log out", key="logout"):
            st.session_state.clear()
            st.rerun()


def keyed_chart(key: str, chart) -> None:
    """An Altair chart in a container keyed `chart-<key>` (the browser tests find it by that class)."""
    with st.container(key=f"chart-{key}"):
        st.altair_chart(chart, width="stretch")
