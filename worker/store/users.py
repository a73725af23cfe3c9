"""The people who sign in to the web console."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from worker.models import User


def user_by_email(s: Session, email: str) -> User | None:
    return s.scalars(select(User).where(User.email == email)).one_or_none()


def user_by_id(s: Session, user_id: int) -> User | None:
    return s.get(User, user_id)


def list_users(s: Session) -> list[User]:
    return list(s.scalars(select(User).order_by(User.email)))


def save_user(s: Session, email: str, password_hash: str, role: str) -> User:
    """Add the user, or give an existing one a new password and role."""
    user = user_by_email(s, email) or User(email=email)
    user.password_hash, user.role = password_hash, role
    s.add(user)
    s.flush()
    return user


def record_sign_in(s: Session, user: User, at: datetime) -> None:
    user.last_sign_in_at = at
    s.flush()


def remove_user(s: Session, user_id: int) -> bool:
    """False when there is no such user."""
    return s.execute(delete(User).where(User.id == user_id)).rowcount == 1
