*** Settings ***
Documentation       Run by tests/libraries/test_robot_keywords.py with E2E_REFERENCE_FAULTS set: the
...                 embedded backend breaks rule 3, and the suite must fail naming it. There is no
...                 suite teardown on purpose: TargetConfig's listener stops the backend anyway.
Library             TargetConfig
Library             AgentAuth
Library             AgentSessions
Library             AgentEvents
Suite Setup         Resolve Target    local


*** Test Cases ***
Agent Answers With Paired Tool Calls
    ${pid}=    Get Target Setting    backend_pid
    Log    embedded backend pid=${pid}
    ${token}=    Create Test Token    alice
    Connect To Agent WebSocket    ${token}
    ${run}=    Send User Message    hello
    ${result}=    Collect Agent Run    ${run}
    Agent Run Should Complete With All Required Events    ${result}
