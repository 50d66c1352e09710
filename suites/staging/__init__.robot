*** Settings ***
Documentation       Acceptance suites for an AI-agent chat backend.
...                 The target is resolved once here: the profile named by E2E_TARGET / --variable
...                 TARGET:<name>; else staging when E2E_BACKEND_URL or E2E_WS_URL is set; else the
...                 embedded reference backend.
Resource            ../../resources/agent_chat.resource
Suite Setup         The Target Is Resolved
Suite Teardown      The Target Is Released
