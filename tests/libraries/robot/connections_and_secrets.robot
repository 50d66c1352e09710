*** Settings ***
Documentation       Run by tests/libraries/test_robot_keywords.py against the pytest session's backend,
...                 configured as the "staging" target through E2E_* environment variables.
Library             TargetConfig
Library             AgentAuth
Library             AgentSessions
Library             AgentEvents
Library             AgentApi
Suite Setup         Suite Setup Connects
Suite Teardown      Release Target


*** Test Cases ***
Failing Test Leaves A Connection Open
    ${token}=    Create Test Token    alice
    Connect To Agent WebSocket    ${token}    alias=left-open
    Send Ping    left-open
    Wait For Event    pong    alias=left-open
    Fail    Deliberate failure with 'left-open' still open

Connection Was Closed When The Failing Test Ended
    ${info}=    Get Connection Info    left-open
    Should Be Equal    ${info}[open]    ${False}
    # welcome, pong and the close the listener made
    Should Be Equal As Integers    ${info}[frames]    3

Suite Connection Stays Open Across Tests
    Connection Should Be Open    suite-conn
    Send Ping    suite-conn
    Wait For Event    pong    alias=suite-conn

Run Timeline Is Logged As A Table
    ${token}=    Create Test Token    bob
    Connect To Agent WebSocket    ${token}    alias=bob
    ${run}=    Send User Message    show me the timeline
    ${result}=    Collect Agent Run    ${run}
    Agent Run Should Complete With All Required Events    ${result}
    Get Run Event Count    ${result}    tool_completed    ==    1

Tokens And Secrets Stay Out Of The Output
    ${token}=    Create Test Token    carol
    Log    ${token}
    ${fetched}=    Get Token From Auth Service    carol@example.com
    ${claims}=    Decode Token    ${fetched}
    Log    ${claims}
    Get Token Claim    ${token}    sub    ==    carol
    ${servers}=    Get Agent Api    /api/mcp/servers    ${token}
    Log    ${servers}
    Connect To Agent WebSocket    ${fetched}    alias=carol
    ${expired}=    Create Expired Token    carol
    Handshake Should Be Refused    ${expired}
    Auth Service Should Refuse Simulation Key    wrong-key
    Secrets Should Be Equal    ${token}    ${token}
    ${masked}=    Mask Secret    ${token}
    Log    ${masked}
    # hand the plain values to the pytest side without logging them
    Evaluate    pathlib.Path($TOKENS_FILE).write_text($token.value + "\\n" + $fetched.value + "\\n" + $expired.value)


*** Keywords ***
Suite Setup Connects
    Resolve Target    staging
    ${token}=    Create Test Token    suite-user
    Connect To Agent WebSocket    ${token}    alias=suite-conn
