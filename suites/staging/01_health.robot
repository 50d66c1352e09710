*** Settings ***
Documentation       The backend and its auth service are up and say so.
Resource            ../../resources/agent_chat.resource
Test Tags           smoke    critical


*** Test Cases ***
Backend Health Endpoint Reports Healthy
    The Backend Should Be Healthy

Backend API Health Endpoint Reports Healthy
    Target Should Support    agent_api
    ${token}=    A Token For User    health-user
    ${body}=    Get Agent Api    /api/health    ${token}
    Should Be Equal    ${body}[status]    healthy
    ...    msg=/api/health answered status '${body}[status]', expected 'healthy'

Auth Service Reports Healthy
    The Auth Service Should Be Healthy
