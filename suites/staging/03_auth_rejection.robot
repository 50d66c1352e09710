*** Settings ***
Documentation       Bad credentials are refused. A bad token that is accepted fails the test:
...                 a refusal is the behaviour under test, never an error to tolerate.
Resource            ../../resources/agent_chat.resource
Test Tags           auth    critical


*** Test Cases ***
Connection Without A Token Is Refused
    Handshake Should Be Refused    ${None}    auth=none

Malformed Token Is Refused
    ${token}=    Create Malformed Token    garbage
    Handshake Should Be Refused    ${token}

Unsigned Token Is Refused
    ${token}=    Create Malformed Token    none-alg
    Handshake Should Be Refused    ${token}

Expired Token Is Refused
    A Token Signed With The Target Secret Is Needed
    ${token}=    Create Expired Token    auth-expired
    Handshake Should Be Refused    ${token}

Token With A Wrong Signature Is Refused
    ${token}=    Create Wrongly Signed Token    auth-forged
    Handshake Should Be Refused    ${token}

Token Without A User Is Refused
    A Token Signed With The Target Secret Is Needed
    ${token}=    Create Token Without Claims    auth-anonymous    sub
    Handshake Should Be Refused    ${token}

Wrong Simulation Key Is Refused By The Auth Service
    Auth Service Should Refuse Simulation Key    wrong-simulation-key

Missing Simulation Key Is Refused By The Auth Service
    Auth Service Should Refuse Simulation Key    ${None}

Agent API Requires A Token
    Agent Api Should Require Authentication    /api/mcp/servers

Expired Token Is Refused By The Agent API
    A Token Signed With The Target Secret Is Needed
    ${token}=    Create Expired Token    api-expired
    Get Agent Api    /api/mcp/servers    ${token}    expected_status=401

Auth Service Issues A Working Token For The Right Key
    A Simulation Key Is Needed
    ${token}=    Get Token From Auth Service    auth-service-user@e2e.test
    Get Token Claim    ${token}    type    ==    access
    Connect To Agent WebSocket    ${token}    alias=auth-service-user
