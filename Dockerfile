FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md alembic.ini celeryconfig.py ./
COPY worker ./worker
COPY tasks ./tasks
COPY schedules ./schedules
COPY migrations ./migrations
COPY emulators ./emulators
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --create-home stsync
USER stsync
