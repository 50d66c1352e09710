*** Settings ***
Documentation       Acceptance suites for an AI-agent chat backend.
...                 The target is resolved once here: the embedded reference backend by default,
...                 or the profile named by E2E_TARGET / --variable TARGET:<name>.
Resource            ../../resources/agent_chat.resource
Suite Setup         The Target Is Resolved
Suite Teardown      The Target Is Released
