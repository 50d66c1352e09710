*** Settings ***
Documentation       The RequestsLibrary session ``backend`` that resolving the target creates carries
...                 the target's trust settings (CA file, verification off, client certificate).
Resource            ../../../resources/agent_chat.resource
Suite Setup         The Target Is Resolved
Suite Teardown      The Target Is Released


*** Test Cases ***
The Backend Session Reaches The Health Endpoint
    ${response}=    GET On Session    backend    /health    expected_status=200
    Should Be Equal    ${response.json()}[status]    healthy
