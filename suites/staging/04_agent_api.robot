*** Settings ***
Documentation       The HTTP endpoints an agent client discovers its services through.
Resource            ../../resources/agent_chat.resource
Suite Setup         An API Token Is Ready
Test Tags           api


*** Test Cases ***
Service Discovery Names Backend WebSocket And Auth
    ${body}=    Get Agent Api    /api/discovery/services    ${API_TOKEN}
    FOR    ${service}    IN    backend    websocket    auth
        Dictionary Should Contain Key    ${body}[services]    ${service}
        ...    msg=Service discovery does not name '${service}': ${body}[services]
        Dictionary Should Contain Key    ${body}[services][${service}]    url
        ...    msg=Service '${service}' has no url: ${body}[services][${service}]
    END

MCP Config Is A Non Empty Object
    ${body}=    Get Agent Api    /api/mcp/config    ${API_TOKEN}
    Should Be True    isinstance($body, dict) and len($body) > 0
    ...    msg=/api/mcp/config answered ${body}, expected a non-empty JSON object

MCP Servers Are Listed With Name And Status
    ${body}=    Get Agent Api    /api/mcp/servers    ${API_TOKEN}
    Should Not Be Empty    ${body}[data]    msg=/api/mcp/servers listed no servers
    FOR    ${server}    IN    @{body}[data]
        Dictionary Should Contain Key    ${server}    name    msg=MCP server entry without name: ${server}
        Dictionary Should Contain Key    ${server}    status    msg=MCP server entry without status: ${server}
    END


*** Keywords ***
An API Token Is Ready
    [Documentation]    A valid token for the API calls of this suite (the suite skips without an agent API).
    Target Should Support    agent_api
    ${token}=    A Token For User    api-user
    VAR    ${API_TOKEN}    ${token}    scope=SUITE
