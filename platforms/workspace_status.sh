#!/usr/bin/env bash
# Bazel's --workspace_status_command (.bazelrc): the commit the images are labelled with.
# Only HEAD, not the dirty state, so two builds of one commit give the same image digests.
echo "STABLE_GIT_COMMIT $(git rev-parse HEAD 2>/dev/null || echo unknown)"
