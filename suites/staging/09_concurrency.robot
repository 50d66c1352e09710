*** Settings ***
Documentation       Many authenticated users chat in parallel; success rate, timeouts, errors and
...                 connect times are reported and held to the target's thresholds
...                 (E2E_CONCURRENT_USERS, E2E_MIN_SUCCESS_RATE, E2E_MAX_CONNECT_P95).
Resource            ../../resources/agent_chat.resource
Library             ../../libraries/AgentConcurrency.py
Test Tags           concurrency


*** Test Cases ***
Concurrent Users Connect Within Thresholds
    ${stats}=    Run Concurrent Sessions    ${E2E_CONCURRENT_USERS}    concurrency=${E2E_CONCURRENT_USERS}
    ...    scenario=connect
    Concurrent Sessions Should Meet Thresholds    ${stats}    min_success_rate=${E2E_MIN_SUCCESS_RATE}
    ...    max_connect_p95=${E2E_MAX_CONNECT_P95}

Concurrent Users Chat Within Thresholds
    [Tags]    critical
    ${stats}=    Run Concurrent Sessions    ${E2E_CONCURRENT_USERS}    concurrency=${E2E_CONCURRENT_USERS}
    ...    scenario=chat
    Concurrent Sessions Should Meet Thresholds    ${stats}    min_success_rate=${E2E_MIN_SUCCESS_RATE}
    ...    max_connect_p95=${E2E_MAX_CONNECT_P95}
    Should Be Equal As Integers    ${stats}[isolation_violations]    0
    ...    msg=${stats}[isolation_violations] events reached a user they did not belong to
