# syntax=docker/dockerfile:1
# clinvk in a container: multi-stage, runs as a non-root user, CLIs optional.
#
#   docker build -t clinvk .                              # with the pinned CLIs
#   docker build -t clinvk --build-arg INSTALL_CLIS=false .   # server only
#   docker run -p 8080:8080 -e CLINVK_API_KEYS=change-me \
#       -v clinvk-home:/home/clinvk clinvk
#
# The CLIs need their own logins or API keys (ANTHROPIC_API_KEY, OPENAI_API_KEY,
# GEMINI_API_KEY ... passed with -e and allowed per backend in config.yaml, or their login
# folders under /home/clinvk). See docs/operations.md.

ARG BASE=node:22-bookworm-slim

# -- the Python package in its own virtual environment ---------------------------------
FROM ${BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/clinvk \
 && /opt/clinvk/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/clinvk/bin/pip install --no-cache-dir .

# -- the backend CLIs (same pins as scripts/install-clis.sh), or nothing ---------------
FROM ${BASE} AS clis
ARG INSTALL_CLIS=true
ARG CLIS="@anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 @google/gemini-cli@0.61.0"
RUN mkdir -p /opt/clis/bin \
 && if [ "$INSTALL_CLIS" = "true" ]; then \
      npm install --global --prefix /opt/clis --no-audit --no-fund $CLIS \
      && npm cache clean --force; \
    fi

# -- runtime ----------------------------------------------------------------------------
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates git tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin clinvk \
 && mkdir -p /home/clinvk/work /home/clinvk/.clinvk \
 && chown -R clinvk:clinvk /home/clinvk
COPY --from=build /opt/clinvk /opt/clinvk
COPY --from=clis /opt/clis /opt/clis
ENV PATH=/opt/clinvk/bin:/opt/clis/bin:$PATH \
    CLINVK_HOME=/home/clinvk/.clinvk \
    PYTHONUNBUFFERED=1
USER clinvk
WORKDIR /home/clinvk/work
EXPOSE 8080
# clinvk finishes in-flight requests (shutdown_grace_secs) and ends its CLIs on SIGTERM;
# give it that long: docker stop --time 30.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status != 200)"]
# tini is PID 1: it reaps the zombies every orphaned process leaves (PID 1 inherits them,
# and clinvk is no init), passes SIGTERM on to clinvk, and exits with clinvk's status, so a
# crashed server stops the container and the kernel ends every process still in it.
ENTRYPOINT ["/usr/bin/tini", "--", "clinvk"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
