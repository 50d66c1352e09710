*** Settings ***
Documentation       One chat message produces one agent run that keeps every rule of the protocol.
...                 Each rule has its own test, so a report names the broken one.
Resource            ../../resources/agent_chat.resource
Suite Setup         One Agent Run Is Collected
Test Tags           events    critical


*** Test Cases ***
Run Contains All Five Required Events
    Run Should Contain Events In Order    ${RUN}
    ...    agent_started    agent_thinking    tool_executing    tool_completed    agent_completed

Run Starts With Agent Started And Ends Once
    Run Should Start And End Once    ${RUN}

Agent Thinks Before Answering
    Run Should Contain Thinking    ${RUN}

Every Tool Call Completes
    Tool Calls Should Be Paired    ${RUN}

Every Event Carries The Run Thread And User Ids
    Run Events Should Carry Ids    ${RUN}

Run Meets Its Time Budgets
    Run Should Meet Time Budgets    ${RUN}

Every Event Matches Its Schema
    Run Events Should Match Schemas    ${RUN}

Tool Events Name The Tool
    ${executing}=    Get Run Events    ${RUN}    tool_executing
    Should Not Be Empty    ${executing}    msg=The run has no tool_executing event, so no tool is named
    Get Event Field    ${executing}[0]    tool_name    matches    .+


*** Keywords ***
One Agent Run Is Collected
    [Documentation]    One user, one message, one collected run that every test of this suite checks.
    An Authenticated User Is Connected    flow-user
    ${run}=    User Sends A Chat Message    Which tools do you have?
    ${result}=    The Agent Run Is Collected    ${run}
    VAR    ${RUN}    ${result}    scope=SUITE
